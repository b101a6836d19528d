"""Operator configuration: built once from the command line (or by tests) and passed down as one object."""

from __future__ import annotations

from dataclasses import dataclass, field

import kubetune

DEFAULT_RUNTIME_IMAGE = f"ghcr.io/kubetune/kubetune-runtime:{kubetune.__version__}"
# images/Dockerfile.vllm: vLLM plus the torch-free kubetune package the adapters sidecar runs
DEFAULT_VLLM_IMAGE = f"ghcr.io/kubetune/kubetune-vllm:{kubetune.__version__}"
RUNTIME_SERVICE_ACCOUNT = "kubetune-runtime"


@dataclass(frozen=True)
class RenderSettings:
    """What render functions need beyond the object itself."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    runtime_service_account: str = RUNTIME_SERVICE_ACCOUNT
    image_pull_policy: str | None = None


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs. No namespaces means all namespaces (cluster-wide)."""

    namespaces: tuple[str, ...] = ()
    kubeconfig: str | None = None
    context: str | None = None
    standalone: bool = True
    peering: str | None = None
    priority: int = 0
    liveness: str | None = None
    resync_seconds: float = 300.0
    render: RenderSettings = field(default_factory=RenderSettings)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
