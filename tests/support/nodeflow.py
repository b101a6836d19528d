"""Builders and waits for tests on the one-node cluster: quickstart resources on local volumes, pod helpers,
and an in-cluster client pod that calls an endpoint with the official openai client.

Every wait tolerates objects and fields that do not exist yet: it polls until a predicate over whatever is there
holds, and only its timeout (which bounds a failing test, never a passing one) ends it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.node import Node
from tests.support.nodeconfig import local_pv
from tests.support.operator import wait_for as poll

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 1.0) -> T:
    """Poll ``probe`` until it returns something truthy (the node's pace: one probe a second by default)."""
    return poll(probe, timeout_s, interval_s, what)


def get(node: Node, resource: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = node.kubectl("get", resource, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def items(node: Node, resource: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["get", resource, "-n", namespace, "-o", "json", *(["-l", selector] if selector else [])]
    result = node.kubectl(*args, check=False)
    return json.loads(result.stdout).get("items", []) if result.returncode == 0 else []


def status_of(node: Node, resource: str, name: str, namespace: str) -> dict[str, Any]:
    return (get(node, resource, name, namespace) or {}).get("status") or {}


def phase(node: Node, resource: str, name: str, namespace: str) -> str | None:
    return status_of(node, resource, name, namespace).get("phase")


def wait_phase(node: Node, resource: str, name: str, namespace: str, want: str, timeout_s: float) -> dict[str, Any]:
    """Wait for ``want``; a terminal phase that is not ``want`` fails at once with the object's status."""
    def probe() -> dict[str, Any] | None:
        status = status_of(node, resource, name, namespace)
        if status.get("phase") in ("Failed",) and want != "Failed":
            raise AssertionError(f"{resource}/{name} failed: {json.dumps(status, indent=1)}\n"
                                 f"{describe_pods(node, namespace)}")
        return status if status.get("phase") == want else None
    return wait_for(probe, timeout_s, f"{resource}/{name} phase {want}")


def describe_pods(node: Node, namespace: str) -> str:
    """Pod states and the last log lines of each: what a failing test should show."""
    out = [node.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout]
    for pod in items(node, "pods", namespace):
        name = pod["metadata"]["name"]
        logs = node.kubectl("logs", "-n", namespace, name, "--all-containers", "--tail=30", check=False)
        out.append(f"--- {name}\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def volumes(node: Node, namespace: str, claims: tuple[str, ...] = ("models", "data")) -> Path:
    """One local PersistentVolume per claim, pre-bound to PVC ``claim`` in ``namespace``; the PVCs themselves.

    Returns the host directory that plays the pvc root: ``<root>/<claim>`` is what pods see at
    ``/mnt/pvc/<claim>``, so ``examples/quickstart/prepare.py`` writes straight onto the volumes."""
    root = node.layout.volumes / namespace
    for claim in claims:
        pv = f"{namespace}-{claim}"
        path = root / claim
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o1777)  # pods run as a non-root UID the volume knows nothing about
        volume = local_pv(pv, path, node.node_name)
        volume["spec"]["claimRef"] = {"namespace": namespace, "name": claim}
        node.apply(volume)
        node.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": namespace},
                    "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local", "volumeName": pv,
                             "resources": {"requests": {"storage": "1Gi"}}}})
    return root


def prepare_quickstart(pvc_root: Path, train_size: int, heldout_size: int) -> list[dict[str, str]]:
    """Base model and datasets onto the volumes (as the quickstart README says); returns the held-out rows."""
    sys.path.insert(0, str(QUICKSTART))
    from prepare import prepare

    _, _, heldout = prepare(pvc_root, train_size=train_size, heldout_size=heldout_size)
    for path in pvc_root.rglob("*"):
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
    return [json.loads(line) for line in heldout.read_text().splitlines()]


def quickstart(kind_file: str, **changes: Any) -> dict[str, Any]:
    """An examples/quickstart resource with nested changes merged in (dicts merge, other values replace)."""
    doc = yaml.safe_load((QUICKSTART / kind_file).read_text())

    def merge(into: dict[str, Any], update: dict[str, Any]) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(doc, changes)
    return doc


def output_dir(node: Node, namespace: str, uri: str) -> Path:
    """The host directory of a ``pvc://`` output on this test's local volumes."""
    assert uri.startswith("pvc://"), uri
    return node.layout.volumes / namespace / uri.removeprefix("pvc://")


CLIENT_SCRIPT = """
import json, os, sys
from openai import OpenAI
rows = json.loads(os.environ["ROWS"])
out = {}
for model, url in json.loads(os.environ["ENDPOINTS"]).items():
    client = OpenAI(base_url=url, api_key=os.environ["API_KEY"], max_retries=3, timeout=300)
    listed = [m.id for m in client.models.list().data]
    replies = [client.chat.completions.create(model=model, temperature=0, max_tokens=16,
               messages=[{"role": "user", "content": r["instruction"]}]).choices[0].message.content or ""
               for r in rows]
    out[model] = {"models": listed, "replies": replies}
print("RESULT " + json.dumps(out))
"""


def run_client_pod(node: Node, namespace: str, image: str, endpoints: dict[str, str], rows: list[dict[str, str]],
                   api_key_secret: tuple[str, str], timeout_s: float = 600) -> dict[str, Any]:
    """Run the openai client in a pod of ``namespace`` against in-cluster ``endpoints`` (model name -> base URL),
    the API key read from a Secret by the kubelet; returns what the pod printed."""
    name = "openai-client"
    node.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client", "image": image, "imagePullPolicy": "Never", "args": ["-c", CLIENT_SCRIPT],
                "env": [{"name": "ENDPOINTS", "value": json.dumps(endpoints)},
                        {"name": "ROWS", "value": json.dumps(rows)},
                        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": api_key_secret[0],
                                                                           "key": api_key_secret[1]}}}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
    done = wait_for(lambda: phase(node, "pod", name, namespace) in ("Succeeded", "Failed") or None, timeout_s,
                    "client pod finished")
    logs = node.kubectl("logs", "-n", namespace, name, check=False)
    assert done and phase(node, "pod", name, namespace) == "Succeeded", \
        f"client pod failed:\n{logs.stdout}{logs.stderr}"
    line = next(x for x in logs.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def word_f1(reply: str, expected: str) -> float:
    """Overlap of the reply's words with the expected answer's (F1): 1.0 for a right answer, near 0 for noise."""
    got, want = reply.split(), expected.split()
    if not got or not want:
        return 0.0
    common = sum(min(got.count(w), want.count(w)) for w in set(want))
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)
