"""Operator configuration: built once from the command line (or by tests) and passed down as one object."""

from __future__ import annotations

from dataclasses import dataclass, field

import kubetune
from kubetune_operator.policy import Policy

DEFAULT_RUNTIME_IMAGE = f"ghcr.io/kubetune/kubetune-runtime:{kubetune.__version__}"
# images/Dockerfile.vllm: vLLM plus the torch-free kubetune package the adapters sidecar runs
DEFAULT_VLLM_IMAGE = f"ghcr.io/kubetune/kubetune-vllm:{kubetune.__version__}"
RUNTIME_SERVICE_ACCOUNT = "kubetune-runtime"
POD_USER = 65532  # the uid images/Dockerfile.* run as; the restricted Pod Security Standard needs non-root


@dataclass(frozen=True)
class RenderSettings:
    """What render functions need beyond the object itself."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    runtime_service_account: str = RUNTIME_SERVICE_ACCOUNT  # training pods
    image_pull_policy: str | None = None
    export_service_account: str | None = RUNTIME_SERVICE_ACCOUNT
    serving_service_account: str | None = None  # None: the namespace default, with no API token mounted
    run_as_user: int = POD_USER

    def service_account(self, kind: str) -> str | None:
        """The ServiceAccount of a kind's pods when the resource names none."""
        return {"FineTuneJob": self.runtime_service_account, "ModelExport": self.export_service_account,
                "InferenceService": self.serving_service_account}[kind]

    def own_service_accounts(self, kind: str, requested: str | None = None) -> tuple[str, ...]:
        """The ServiceAccounts the operator itself vouches for on a kind's pods. When the resource names none
        (``requested``): the kind's default and, for an InferenceService, the runtime identity of its adapters
        sidecar (whose token only that container mounts). When it names one, only the kind's default: any other
        account a tenant names, the sidecar's identity included, must be on the admin's list."""
        own = [self.service_account(kind)]
        if not requested and kind == "InferenceService":
            own.append(self.runtime_service_account)
        return tuple(account for account in own if account)

    @property
    def images(self) -> tuple[str, str]:
        """The images the operator itself is configured with: always allowed."""
        return (self.runtime_image, self.vllm_image)


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
    policy: Policy = field(default_factory=Policy)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
