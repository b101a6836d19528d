"""Keep a running vLLM server's LoRA adapters equal to a wanted list, without restarting it.

vLLM started with ``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (see
:mod:`kubetune.config.mapping.vllm`) takes ``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` and lists
loaded adapters in ``/v1/models`` (entries with a ``parent``). :func:`plan` compares the two lists (pure);
:func:`sync` applies the plan over HTTP. ``kubetune serve``/``kubetune run`` call it once after start-up; in a
cluster the ``adapters`` sidecar (:mod:`kubetune.serve.adapters_cli`) calls it whenever the adapter list mounted
from the InferenceService's ConfigMap changes. Torch-free, standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 120.0  # loading an adapter reads its weights; generous on a busy machine


class AdapterSyncError(RuntimeError):
    """The server refused a load or unload, or could not be reached."""


@dataclass(frozen=True)
class Plan:
    """What to change: adapters to unload (names) and to load (name -> path), in that order."""

    unload: tuple[str, ...] = ()
    load: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.unload and not self.load


def plan(wanted: Mapping[str, str], loaded: Mapping[str, str], keep: frozenset[str] = frozenset()) -> Plan:
    """Changes that turn ``loaded`` (name -> path) into ``wanted``; names in ``keep`` are never touched.

    An adapter whose path changed is unloaded and loaded again (vLLM caches adapters by name). Paths compare
    without trailing slashes (URIs of directories often carry one).
    """
    want = {n: _norm(p) for n, p in wanted.items()}
    have = {n: _norm(p) for n, p in loaded.items()}
    unload = [n for n, p in have.items() if n not in keep and want.get(n) != p]
    load = [(n, wanted[n]) for n, p in want.items() if n not in keep and have.get(n) != p]
    return Plan(tuple(sorted(unload)), tuple(sorted(load)))


def _norm(path: str) -> str:
    return path.rstrip("/") or "/"


class VllmAdmin:
    """The few vLLM endpoints adapter management needs."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = TIMEOUT_S):
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json",
                        **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> str:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=self.headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read().decode()
        except urllib.error.HTTPError as err:
            raise AdapterSyncError(f"{method} {path}: HTTP {err.code}: {err.read().decode(errors='replace')}") \
                from err
        except (urllib.error.URLError, OSError) as err:
            raise AdapterSyncError(f"{method} {self.url}{path}: {err}") from err

    def loaded(self) -> dict[str, str]:
        """Adapters the server holds now: name -> path (``root`` in /v1/models)."""
        models = json.loads(self._call("GET", "/v1/models"))["data"]
        return {m["id"]: m.get("root") or "" for m in models if m.get("parent")}

    def load(self, name: str, path: str) -> None:
        self._call("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    def unload(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", {"lora_name": name})


def sync(admin: VllmAdmin, wanted: Mapping[str, str], keep: frozenset[str] = frozenset()) -> Plan:
    """Apply :func:`plan` to the server; returns what was done. Raises AdapterSyncError on the first refusal."""
    todo = plan(wanted, admin.loaded(), keep)
    for name in todo.unload:
        admin.unload(name)
    for name, path in todo.load:
        admin.load(name, path)
    return todo
