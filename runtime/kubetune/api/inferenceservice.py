"""InferenceService: an OpenAI-compatible endpoint (vLLM or the kubetune HF engine) as Deployment + Service."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.common import (
    NAME_PATTERN,
    ONE_SOURCE,
    LocalObjectRef,
    ModelSource,
    ObjectStatus,
    Quantity,
    Scheduling,
    SecretKeyRef,
    Uri,
)
from kubetune.api.conditions import InferenceServicePhase


class Backend(StrEnum):
    VLLM = "vllm"
    HF = "hf"


class AdapterSpec(KubeModel):
    """A LoRA adapter served next to the base model under its own name."""

    name: str = Field(max_length=128, pattern=NAME_PATTERN, description="The OpenAI model name of the adapter.")
    uri: Uri | None = Field(None, description="Adapter directory (PEFT layout).")
    fine_tune_job_ref: LocalObjectRef | None = Field(None, description="A FineTuneJob whose output is an adapter.")
    model_export_ref: LocalObjectRef | None = Field(None, description="A ModelExport whose output is an adapter.")

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(ONE_SOURCE, "exactly one of uri, fineTuneJobRef or modelExportRef must be set"),
    )


# Engine flags a resource may not pass: they load code (trust-remote-code, plugins, middleware, logits processors,
# worker classes, config files), change authentication or TLS (api-key, hf-token, ssl-*), open files or network
# endpoints (media paths and domains, download dir, tracing, KV transfer, CORS), or override what the operator
# sets (model, tokenizer, names, address, adapters). Entries ending in "-" deny every flag with that prefix.
DENIED_ENGINE_FLAGS: tuple[str, ...] = (
    "trust-remote-code", "code-revision", "api-key", "hf-token", "ssl-", "enable-ssl-refresh", "root-path",
    "middleware", "allowed-local-media-path", "allowed-media-domains", "allowed-origins", "allow-credentials",
    "chat-template", "host", "port", "uds", "model", "tokenizer", "download-dir", "served-model-name",
    "lora-modules", "tool-parser-plugin", "reasoning-parser-plugin", "logits-processors", "worker-cls",
    "worker-extension-cls", "config", "generation-config", "load-format", "model-loader-extra-config",
    "otlp-traces-endpoint", "kv-transfer-config", "data-parallel-address",
)


def _flag_pattern(flags: tuple[str, ...]) -> str:
    """One RE2 pattern for ``--flag``, ``--flag=value`` and the ``--flag_name`` spelling vLLM also accepts."""
    assert all(re.fullmatch(r"[a-z-]+", f) for f in flags)  # no regex metacharacters, no CEL string escapes
    names = [f.replace("-", "[-_]") + (".*" if f.endswith("-") else "") for f in flags]
    return f"^--({'|'.join(names)})([=.].*)?$"


DENIED_ENGINE_FLAG_PATTERN = _flag_pattern(DENIED_ENGINE_FLAGS)
EngineArg = Annotated[str, Field(max_length=1024)]


class EngineSpec(KubeModel):
    """The serving engine."""

    backend: Backend = Field(Backend.VLLM, description="vllm (GPU, or CPU with a CPU build of vLLM) or hf "
                             "(kubetune's engine, CPU or GPU).")
    tensor_parallel_size: int = Field(1, ge=1, le=64, description="GPUs one replica shards the model over.")
    max_model_len: int | None = Field(None, ge=16, le=10485760, description="Context length to serve.")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0, description="vLLM: fraction of GPU memory to use.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field("auto", description="Weight dtype.")
    threads: int | None = Field(
        None, ge=1, le=1024, description="hf: torch intra-op threads per replica. Default: the container's CPU "
        "budget (CPU limit and cpuset, rounded down), less one from 3 CPUs on, and 1 for models with a hidden "
        "size below 512.")
    max_loras: int = Field(4, ge=1, le=256, description="vLLM: adapters resident at once.")
    max_lora_rank: int = Field(64, ge=1, le=1024, description="vLLM: largest adapter rank served.")
    extra_args: list[EngineArg] = Field(
        default_factory=list, max_length=64,
        description="Extra command-line arguments for the engine. Flags that load code, change authentication, "
        "open files or network endpoints, or override what kubetune sets (--trust-remote-code, --api-key, --ssl-*, "
        "--host, --port, --model, --chat-template, ...) are rejected.",
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.threads) || self.backend == 'hf'",
            "threads applies to backend hf only (vLLM sizes its own thread pools; pass vLLM settings in extraArgs)",
            ".threads",
        ),
        CelRule(
            f"!has(self.extraArgs) || self.extraArgs.all(a, !a.matches('{DENIED_ENGINE_FLAG_PATTERN}'))",
            "extraArgs may not set flags that load code, change authentication, open files or network endpoints, "
            "or override what kubetune sets (--trust-remote-code, --api-key, --ssl-*, --host, --port, --model, "
            "--chat-template, --lora-modules, ...); see kubetune.api.inferenceservice.DENIED_ENGINE_FLAGS",
            ".extraArgs",
        ),
    )


class ServingResources(KubeModel):
    """Resources of each serving replica."""

    gpus_per_replica: int = Field(1, ge=0, le=64, description="GPUs per replica (0 for the hf engine on CPU).")
    gpu_resource_name: str = Field("nvidia.com/gpu", max_length=253, description="Extended resource of a GPU.")
    requests: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource requests.")
    limits: dict[str, Quantity] | None = Field(None, max_length=16, description="Container resource limits.")


class AuthSpec(KubeModel):
    """Access control of the endpoint."""

    api_key_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret holding the API key clients send as a Bearer token."
    )


class ServerLimitsSpec(KubeModel):
    """What one client may take from the endpoint (backend hf; vLLM takes its own flags in engine.extraArgs).

    Unset fields keep the server's defaults; each maps to the serve config key of the same name in snake_case.
    """

    max_body_bytes: int | None = Field(None, ge=1024, le=2**31, description="Largest request body (413 beyond).")
    max_prompt_chars: int | None = Field(None, ge=1, le=10**9, description="Largest prompt in characters, checked "
                                         "before tokenizing (default: 16 per token of context).")
    max_sequences_per_request: int | None = Field(None, ge=1, le=100000, description="Prompts x n of one "
                                                  "request (400 beyond).")
    max_queued_sequences: int | None = Field(None, ge=1, le=1000000, description="Sequences generating or "
                                             "waiting across requests (429 beyond).")
    max_connections: int | None = Field(None, ge=1, le=1000000, description="Open client connections.")
    read_timeout_seconds: float | None = Field(None, gt=0, le=3600, description="Time to send request headers, "
                                               "and between parts of a body.")
    keep_alive_seconds: float | None = Field(None, gt=0, le=3600, description="Idle keep-alive connection "
                                             "lifetime.")
    shutdown_seconds: float | None = Field(None, ge=0, le=3600, description="On termination, how long running "
                                           "requests may finish.")
    max_image_bytes: int | None = Field(None, ge=1, le=2**31, description="Largest image of a chat request in "
                                        "encoded bytes (400 beyond).")
    max_image_pixels: int | None = Field(None, ge=1, le=2**31, description="Largest image in pixels, checked "
                                         "before decoding (400 beyond).")
    max_images_per_request: int | None = Field(None, ge=0, le=1024, description="Images in one chat request "
                                               "(400 beyond).")

    def serve_config(self) -> dict[str, Any]:
        """The ``limits`` mapping of the serve config (snake_case keys, unset fields left out)."""
        return self.model_dump(exclude_none=True)


class InferenceServiceSpec(Scheduling):
    """What to serve and how."""

    model: ModelSource = Field(description="The model: a uri, a ModelExport, or a FineTuneJob (adapter on its base).")
    served_model_name: str | None = Field(
        None, max_length=128, description="The OpenAI model name; defaults to the object's name."
    )
    adapters: list[AdapterSpec] | None = Field(None, max_length=32, description="LoRA adapters to serve too.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="Engine settings.")
    replicas: int = Field(1, ge=0, le=1000, description="Number of replicas (scale subresource).")
    resources: ServingResources = Field(default_factory=ServingResources, description="Per-replica resources.")
    auth: AuthSpec | None = Field(None, description="API key protection.")
    limits: ServerLimitsSpec | None = Field(None, description="Per-client bounds of the hf engine's server.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the endpoint.")
    startup_timeout_seconds: int = Field(
        1800, ge=30, le=86400, description="How long a replica may take to load its weights before it restarts."
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!has(self.adapters) || self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
            "adapter names must be unique", ".adapters",
        ),
        CelRule(
            "!has(self.servedModelName) || !has(self.adapters) || "
            "self.adapters.all(a, a.name != self.servedModelName)",
            "an adapter cannot have the same name as servedModelName", ".adapters",
        ),
        CelRule(
            "self.engine.backend != 'vllm' || self.resources.gpusPerReplica == 0 || "
            "self.resources.gpusPerReplica >= self.engine.tensorParallelSize",
            "vllm needs resources.gpusPerReplica >= engine.tensorParallelSize (or 0 with a CPU build of vLLM)",
            ".resources.gpusPerReplica",
        ),
    )


class ResolvedAdapter(KubeModel):
    """An adapter's concrete location."""

    name: str = Field(max_length=128, description="Served name.")
    uri: str = Field(max_length=2048, description="Adapter directory.")


class ResolvedModel(KubeModel):
    """The model's concrete location."""

    uri: str = Field(max_length=2048, description="Model directory.")
    source: str | None = Field(None, max_length=512, description="Kind/name it was resolved from.")


class InferenceServiceStatus(ObjectStatus):
    """Observed state of an InferenceService."""

    phase: InferenceServicePhase | None = Field(
        None, description="Pending, WaitingForModel, Deploying, Ready or Failed."
    )
    url: str | None = Field(None, max_length=2048, description="In-cluster base URL of the OpenAI API.")
    served_models: list[str] | None = Field(None, max_length=64, description="Names the endpoint answers to.")
    replicas: int = Field(0, ge=0, description="Replicas that exist.")
    ready_replicas: int = Field(0, ge=0, description="Replicas ready to serve.")
    selector: str | None = Field(None, max_length=1024, description="Label selector of the pods (scale subresource).")
    resolved_model: ResolvedModel | None = Field(None, description="The model being served.")
    resolved_adapters: list[ResolvedAdapter] | None = Field(None, max_length=32, description="Adapters served.")
    loaded_adapters: list[str] | None = Field(
        None, max_length=64, description="vLLM: adapters the running server holds, as last reported by a replica's "
        "adapters sidecar (they load and unload without restarting the pods).")
    deployment: str | None = Field(None, max_length=253, description="Name of the Deployment.")


class InferenceService(KubeModel):
    """An OpenAI-compatible endpoint in the cluster."""

    api_version: str = Field("kubetune.io/v1alpha1", description="kubetune.io/v1alpha1")
    kind: str = Field("InferenceService", description="InferenceService")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: InferenceServiceSpec = Field(description="Desired endpoint; changes roll the Deployment.")
    status: InferenceServiceStatus | None = Field(None, description="Observed state, written by the operator.")

