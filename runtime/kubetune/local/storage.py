"""s3:// for ``kubetune run``: the same staging the pods do, in-process, into ``<work-dir>/s3``.

Inputs are every s3:// URI in the spec (but its output) and the resolved upstream outputs; they are downloaded
before the work starts (a rerun skips what is complete and continues part files). The output is uploaded once
the work succeeded, the manifest last. Endpoint and region come from ``spec.storage.s3``, else the environment;
credentials from the environment (``AWS_ACCESS_KEY_ID``, ...), as there are no Secrets locally.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kubetune.api.common import Scheduling
from kubetune.uris import s3_uris


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def spec_inputs(spec: Scheduling) -> list[str]:
    """The s3:// URIs a spec reads: every s3:// string in it except ``output``."""
    wire = spec.wire()
    wire.pop("output", None)
    return s3_uris(_strings(wire))


def mirror_for(spec: Scheduling, root: Path) -> Any:
    from kubetune.storage.staging import Mirror

    s3 = spec.storage.s3 if spec.storage else None
    return Mirror(root, endpoint=s3.endpoint if s3 else None, region=s3.region if s3 else None)


def stage_inputs(spec: Scheduling, root: Path, resolved: Iterable[str | None], say: Any) -> str | None:
    """Download the spec's s3:// inputs and the resolved ones; None, or the message of what failed."""
    wanted = s3_uris([*spec_inputs(spec), *resolved])
    if not wanted:
        return None
    from kubetune.storage.s3 import StorageError
    from kubetune.storage.staging import stage_in
    from kubetune.uris import UriError

    try:
        stage_in(mirror_for(spec, root), wanted, say=say)
    except (StorageError, UriError) as exc:
        return str(exc)
    except ModuleNotFoundError as exc:
        return f"s3:// needs {exc.name}: pip install 'kubetune[storage]'"
    return None


def stage_output(spec: Scheduling, root: Path, output_uri: str, say: Any) -> str | None:
    """Upload an s3:// output from the mirror; None, or the message of what failed. Other outputs: nothing."""
    if not output_uri.startswith("s3://"):
        return None
    from kubetune.storage.s3 import StorageError
    from kubetune.storage.staging import stage_out

    try:
        stage_out(mirror_for(spec, root), output_uri.rstrip("/"), say=say)
    except StorageError as exc:
        return str(exc)
    return None
