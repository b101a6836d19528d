"""Copy ``s3://bucket/prefix`` to a local folder and back, verified and resumable, with MinIO's S3 client.

The endpoint and credentials come from the usual AWS variables: ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``)
for an S3-compatible server (default AWS S3), ``AWS_REGION``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, else a web identity (``AWS_WEB_IDENTITY_TOKEN_FILE``, as IRSA sets it), else
``~/.aws/credentials``. In pods the operator sets them from ``spec.storage.s3`` and its Secret; ``kubetune run``
uses whatever the shell has.

Downloads: each object lands in ``<file>.part`` first and is renamed once its size (and, for single-part uploads,
its MD5 = ETag) match; an interrupted download continues from the part file's length with a ranged GET that
must still match the object's ETag. A file already there with the object's size and MD5 is skipped.

Uploads: every file but the artifact manifest first, the manifest last, so a consumer that waits for the manifest
never reads half an upload. A file already there with the same size and MD5 is skipped, so a retried upload
continues where it stopped. Files larger than PART_SIZE go up in parts (MinIO's multipart upload).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubetune.uris import UriError, contained

PART_SUFFIX = ".part"
CHUNK = 8 * 1024 * 1024
PART_SIZE = 32 * 1024 * 1024  # larger files go up in parts of this size (S3's smallest part is 5 MiB)
AWS_S3 = "https://s3.amazonaws.com"
Say = Callable[[str], None]


class StorageError(RuntimeError):
    """An object store that cannot be read or written; the message names the URI and what to check."""


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"). Raises UriError for a URI that leaves its bucket."""
    if not uri.startswith("s3://"):
        raise UriError(f"{uri!r}: expected s3://<bucket>/<path>")
    bucket, _, key = contained(uri).removeprefix("s3://").partition("/")
    if not bucket:
        raise UriError(f"{uri!r}: expected s3://<bucket>/<path>")
    return bucket, "/".join(p for p in key.split("/") if p)


def _credentials(env: dict[str, str]) -> Any:
    from minio.credentials import AWSConfigProvider, EnvAWSProvider, IamAwsProvider

    if env.get("AWS_ACCESS_KEY_ID"):
        return EnvAWSProvider()
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return IamAwsProvider()
    if Path(env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser().is_file():
        return AWSConfigProvider()
    return None  # anonymous: public buckets


def client(endpoint: str | None = None, region: str | None = None) -> Any:
    """An S3 client. ``endpoint``/``region`` override ``AWS_ENDPOINT_URL_S3``/``AWS_REGION``."""
    from minio import Minio

    env = dict(os.environ)
    url = urlparse(endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or AWS_S3)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise StorageError(f"{endpoint or url.geturl()!r}: the S3 endpoint must be an http:// or https:// URL")
    return Minio(url.netloc, secure=url.scheme == "https", credentials=_credentials(env),
                 region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None)


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str  # without quotes; "<md5>-<parts>" for multipart uploads


def _etag(value: str) -> str:
    return value.strip('"')


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, obj: RemoteObject) -> bool:
    """A local file holds the object: same size, and the same MD5 where the ETag is one (single-part)."""
    if not path.is_file() or path.stat().st_size != obj.size:
        return False
    return "-" in obj.etag or md5_file(path) == obj.etag


def _code(exc: Exception) -> str:
    return str(getattr(exc, "code", "") or "")


def _error(uri: str, exc: Exception) -> StorageError:
    code = _code(exc)
    hint = {"NoSuchBucket": "the bucket does not exist", "AccessDenied": "check the credentials Secret",
            "InvalidAccessKeyId": "check the credentials Secret", "SignatureDoesNotMatch": "check the secret key"}
    return StorageError(f"{uri}: {hint.get(code, str(exc))} ({code or type(exc).__name__}); endpoint from "
                        "spec.storage.s3.endpoint or AWS_ENDPOINT_URL_S3")


_MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


def list_objects(s3: Any, uri: str) -> list[RemoteObject]:
    """The objects under ``uri``: the one object it names, or everything under it as a folder."""
    bucket, key = split_s3(uri)
    try:
        found = [RemoteObject(o.object_name, int(o.size), _etag(o.etag))
                 for o in s3.list_objects(bucket, prefix=f"{key}/" if key else None, recursive=True)
                 if not o.is_dir]
        if not found and key:
            try:
                head = s3.stat_object(bucket, key)
            except Exception as exc:
                if _code(exc) in _MISSING:
                    return []
                raise
            found = [RemoteObject(key, int(head.size), _etag(head.etag))]
    except StorageError:
        raise
    except Exception as exc:
        raise _error(uri, exc) from exc
    return found


class Progress:
    """Plain progress lines (no terminal control): at most one per ``every`` bytes and one at the end."""

    def __init__(self, verb: str, uri: str, total: int, say: Say, every: int = 64 * 1024 * 1024) -> None:
        self.verb, self.uri, self.total, self.say, self.every = verb, uri, total, say, every
        self.done = 0
        self._next = every

    def add(self, count: int) -> None:
        self.done += count
        if self.done >= self._next and self.done < self.total:
            self._next = self.done + self.every
            self.say(f"{self.verb} {self.uri}: {_mb(self.done)} of {_mb(self.total)}")

    def finish(self, files: int, skipped: int) -> None:
        kept = f", {skipped} already there" if skipped else ""
        self.say(f"{self.verb} {self.uri}: {files} file(s), {_mb(self.total)}{kept}")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _target(obj: RemoteObject, key: str, dest: Path) -> Path:
    """Where an object lands: ``dest`` itself for the one object ``uri`` names, else its path under ``dest``."""
    return dest if obj.key == key else dest / obj.key[len(key):].lstrip("/")


def download(uri: str, dest: Path, *, s3: Any = None, say: Say = print) -> Path:
    """Copy ``uri`` to ``dest``: a folder's files keep their paths under the folder ``dest``; a single object
    becomes the file ``dest``. Returns ``dest``.

    Raises:
        StorageError: the location holds nothing, cannot be read, or a file does not match its object after
            download (it is removed; rerun to fetch it again).
    """
    s3 = s3 or client()
    bucket, key = split_s3(uri)
    objects = list_objects(s3, uri)
    if not objects:
        raise StorageError(f"{uri}: no object there (expected a file or a folder of files)")
    progress = Progress("downloaded", uri, sum(o.size for o in objects), say)
    skipped = 0
    for obj in objects:
        target = _target(obj, key, dest)
        if _matches(target, obj):
            skipped += 1
            progress.add(obj.size)
            continue
        _fetch(s3, bucket, obj, target, progress, uri)
    progress.finish(len(objects), skipped)
    return dest


def _fetch(s3: Any, bucket: str, obj: RemoteObject, target: Path, progress: Progress, uri: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)
    start = part.stat().st_size if part.is_file() else 0
    if start > obj.size:
        part.unlink()
        start = 0
    progress.add(start)
    if start < obj.size:
        try:
            body = s3.get_object(bucket, obj.key, offset=start, request_headers={"If-Match": f'"{obj.etag}"'})
        except Exception as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                part.unlink(missing_ok=True)  # the object changed since the part was written: start over
                raise StorageError(f"s3://{bucket}/{obj.key} changed during the download; run again") from exc
            raise _error(uri, exc) from exc
        try:
            with part.open("ab") as handle:
                for block in body.stream(CHUNK):
                    handle.write(block)
                    progress.add(len(block))
        finally:
            body.close()
            body.release_conn()
    if not _matches(part, obj):
        part.unlink()
        raise StorageError(f"s3://{bucket}/{obj.key}: the downloaded file does not match the object's size/ETag "
                           f"({obj.size} bytes, ETag {obj.etag}); removed it, run again")
    os.replace(part, target)


def _files(src: Path, last: str | None) -> Iterator[Path]:
    """Files under ``src`` in a stable order, ``last`` (a top-level name) at the end; part files left out."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.endswith(PART_SUFFIX))
    yield from (p for p in files if p.relative_to(src).as_posix() != last)
    yield from (p for p in files if p.relative_to(src).as_posix() == last)


def upload(src: Path, uri: str, *, s3: Any = None, last: str | None = None, say: Say = print) -> list[str]:
    """Copy every file under the folder ``src`` to ``uri/<relative path>``, ``last`` after all others.

    Returns the keys written or found up to date. Raises StorageError when the store refuses a write.
    """
    s3 = s3 or client()
    bucket, key = split_s3(uri)
    existing = {o.key: o for o in list_objects(s3, uri)}
    files = list(_files(src, last))
    progress = Progress("uploaded", uri, sum(p.stat().st_size for p in files), say)
    keys, skipped = [], 0
    for path in files:
        object_key = "/".join(p for p in (key, path.relative_to(src).as_posix()) if p)
        keys.append(object_key)
        size = path.stat().st_size
        if object_key in existing and _matches(path, existing[object_key]):
            skipped += 1
            progress.add(size)
            continue
        try:
            with path.open("rb") as handle:
                s3.put_object(bucket, object_key, handle, size, part_size=max(PART_SIZE, 5 * 1024 * 1024))
        except Exception as exc:
            raise _error(f"s3://{bucket}/{object_key}", exc) from exc
        progress.add(size)
    progress.finish(len(files), skipped)
    return keys
