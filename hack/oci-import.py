#!/usr/bin/env python3
"""Import one image from an OCI layout directory into containerd, sending only the blobs containerd lacks.

`buildah push IMG oci:DIR:IMG` writes into DIR only the layers DIR does not have yet, and this sends containerd
only what *it* does not have: after a source change of a 6.5 GB image that is one small layer instead of the whole
image through `docker-archive` (minutes). Prints nothing; exits non-zero with ctr's error.

    oci-import.py DIR IMAGE CONTAINERD_SOCKET        import IMAGE (its manifest is found by its ref name in DIR)
    oci-import.py --prune DIR IMAGE...               keep only these images' manifests and blobs in DIR
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

REF = "org.opencontainers.image.ref.name"


def blob(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def manifest_of(layout: Path, image: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    found = [m for m in index["manifests"] if (m.get("annotations") or {}).get(REF) == image]
    if not found:
        raise SystemExit(f"{image}: not in {layout}/index.json")
    return found[-1]


def referenced(layout: Path, descriptor: dict) -> list[str]:
    """The manifest's digest, its config's and its layers'."""
    manifest = json.loads(blob(layout, descriptor["digest"]).read_text())
    return [descriptor["digest"], manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def import_image(layout: Path, image: str, socket: str) -> None:
    ctr = ["ctr", "-a", socket, "-n", "k8s.io"]
    present = set(subprocess.run([*ctr, "content", "ls", "-q"], capture_output=True, text=True,
                                 check=True).stdout.split())
    descriptor = manifest_of(layout, image)
    digests = referenced(layout, descriptor)
    # The manifest and config are always sent (small); layers only when containerd lacks them.
    send = [d for i, d in enumerate(digests) if i < 2 or d not in present]
    index = {"schemaVersion": 2, "manifests": [
        {**descriptor, "annotations": {REF: image, "io.containerd.image.name": image}}]}
    proc = subprocess.Popen([*ctr, "images", "import", "-"], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
        add_bytes(tar, "oci-layout", (layout / "oci-layout").read_bytes())
        add_bytes(tar, "index.json", json.dumps(index).encode())
        for digest in send:
            tar.add(blob(layout, digest), arcname=str(blob(Path(), digest)))
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ctr images import of {image} failed ({proc.returncode})")


def prune(layout: Path, images: list[str]) -> None:
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = [m for m in index["manifests"] if (m.get("annotations") or {}).get(REF) in images]
    keep = {d for m in index["manifests"] for d in referenced(layout, m)}
    (layout / "index.json").write_text(json.dumps(index))
    for path in (layout / "blobs").glob("*/*"):
        if f"{path.parent.name}:{path.name}" not in keep:
            path.unlink()


def main(argv: list[str]) -> None:
    if argv[:1] == ["--prune"]:
        prune(Path(argv[1]), argv[2:])
    else:
        import_image(Path(argv[0]), argv[1], argv[2])


if __name__ == "__main__":
    main(sys.argv[1:])
