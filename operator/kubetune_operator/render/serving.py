"""InferenceService -> Deployment (vLLM's OpenAI server, or ``kubetune serve`` for backend hf) + ClusterIP Service.

Model and adapters arrive as resolved URIs and are mounted like every other kubetune input. vLLM gets its command
line; ``kubetune serve`` gets one mounted serve config (LLaMA-Factory inference keys, as it takes locally) in an
owned ConfigMap. The pod template carries a hash of the spec and of the resolved inputs, so any change to either
rolls the Deployment while a change of ``replicas`` alone only scales it.

Naming: an adapter served as the model itself (a FineTuneJob's LoRA output) answers to the service's name; vLLM
then serves the bare base as ``<name>-base``, the hf engine applies the adapter to every request for ``<name>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from kubetune.api.inferenceservice import Backend, InferenceService
from kubetune.config.mapping.serve import serve_config_from_inferenceservice
from kubetune.config.mapping.vllm import VllmCommand, render_vllm_command
from kubetune.config.serve_args import ServeConfig
from kubetune_operator.kinds import SPEC_HASH, owner_label
from kubetune_operator.meta import child_labels, child_metadata, stable_hash
from kubetune_operator.render import pods
from kubetune_operator.render.adapters import (
    adapters_sidecar,
    adapters_volumes,
    render_adapters_config_map,
    runtime_adapters,
)
from kubetune_operator.settings import RenderSettings

CONTAINER = "server"
CONFIG_KEY = "serve.yaml"
PROBE_PERIOD = 10
API_KEY_ENV = {Backend.VLLM: "VLLM_API_KEY", Backend.HF: "API_KEY"}


@dataclass(frozen=True)
class ServingInputs:
    """What to load: the model directory (or hub id), the served name, and adapters.

    ``default_adapter`` is an adapter that answers to ``name`` itself (the model was a LoRA output).
    """

    model_uri: str
    name: str
    adapters: tuple[tuple[str, str], ...] = ()  # (served name, adapter uri)
    default_adapter: str | None = None

    def served_models(self, backend: str) -> list[str]:
        names = [name for name, _ in self.adapters]
        if self.default_adapter and backend == Backend.VLLM:
            return [f"{self.name}-base", self.name, *names]
        return [self.name, *names]


def config_map_name(name: str) -> str:
    return f"{name}-serve-config"


def url(parent: dict[str, Any], port: int) -> str:
    """The in-cluster base URL of the OpenAI API."""
    meta = parent["metadata"]
    return f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local:{port}/v1"


def pod_serve_config(isvc: InferenceService, inputs: ServingInputs) -> ServeConfig:
    """The serve config of the pod: the InferenceService mapping ``kubetune run`` uses, with in-pod paths."""
    return serve_config_from_inferenceservice(
        isvc, model_path=pods.pod_path(inputs.model_uri),
        adapters={name: pods.pod_path(uri) for name, uri in inputs.adapters},
        model_adapter=pods.pod_path(inputs.default_adapter) if inputs.default_adapter else None)


def vllm_command(isvc: InferenceService, inputs: ServingInputs) -> VllmCommand:
    """``vllm serve`` argv and plain environment, from the function local runs use too.

    Named adapters are not in it: the ``adapters`` sidecar loads them from the adapters ConfigMap. The API key
    is added by the container as a Secret reference, never on the command line.
    """
    return render_vllm_command(pod_serve_config(isvc, inputs))


def vllm_args(isvc: InferenceService, inputs: ServingInputs) -> list[str]:
    return vllm_command(isvc, inputs).argv


def serve_config(isvc: InferenceService, inputs: ServingInputs) -> dict[str, Any]:
    """The flat config ``kubetune serve FILE`` reads (backend hf); the API key comes from env API_KEY."""
    engine = isvc.spec.engine
    config: dict[str, Any] = {
        "model_name_or_path": pods.pod_path(inputs.model_uri),
        "served_model_name": inputs.name,
        "infer_backend": "huggingface",
        "infer_dtype": engine.dtype,
        "host": "0.0.0.0",
        "port": isvc.spec.port,
    }
    if inputs.default_adapter:
        config["default_adapter"] = pods.pod_path(inputs.default_adapter)
    if inputs.adapters:
        config["lora_adapters"] = [{"name": n, "path": pods.pod_path(u)} for n, u in inputs.adapters]
    if engine.max_model_len:
        config["max_model_len"] = engine.max_model_len
    if engine.threads:
        config["threads"] = engine.threads
    if isvc.spec.limits and isvc.spec.limits.serve_config():
        config["limits"] = isvc.spec.limits.serve_config()
    return config


def render_config_map(parent: dict[str, Any], isvc: InferenceService, inputs: ServingInputs) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(parent, config_map_name(parent["metadata"]["name"])),
        "data": {CONFIG_KEY: yaml.safe_dump(serve_config(isvc, inputs), sort_keys=False)},
    }


def _probes(isvc: InferenceService) -> dict[str, Any]:
    """Startup waits up to startupTimeoutSeconds for weights to load; readiness proves the served model list."""
    port = "http"
    startup = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": PROBE_PERIOD, "timeoutSeconds": 5,
               "failureThreshold": math.ceil(isvc.spec.startup_timeout_seconds / PROBE_PERIOD)}
    if isvc.spec.auth and isvc.spec.auth.api_key_secret_ref:
        # /v1/* needs the key; an exec probe reads it from the container env instead of the pod spec.
        env = API_KEY_ENV[Backend(isvc.spec.engine.backend)]
        check = (f"import os,urllib.request as u;u.urlopen(u.Request('http://127.0.0.1:{isvc.spec.port}/v1/models',"
                 f"headers={{'Authorization':'Bearer '+os.environ['{env}']}}),timeout=4)")
        readiness: dict[str, Any] = {"exec": {"command": ["python3", "-c", check]}}
    else:
        readiness = {"httpGet": {"path": "/v1/models", "port": port}}
    readiness.update({"periodSeconds": PROBE_PERIOD, "timeoutSeconds": 5, "failureThreshold": 3})
    liveness = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 20, "timeoutSeconds": 5,
                "failureThreshold": 3}
    return {"startupProbe": startup, "readinessProbe": readiness, "livenessProbe": liveness}


def template_hash(isvc: InferenceService, inputs: ServingInputs) -> str:
    """Changes whenever the pods must be replaced: any spec field except replicas, or a re-resolved input.

    Adapters loaded at run time (render.adapters) are left out: changing them must not replace the pods.
    """
    spec = isvc.spec.wire()
    spec.pop("replicas", None)
    adapters: list[Any] = list(inputs.adapters)
    if runtime_adapters(isvc):
        spec["adapters"], adapters = "loaded at run time", []
    return stable_hash({"spec": spec, "inputs": [inputs.model_uri, inputs.name, adapters, inputs.default_adapter]})


def _image(isvc: InferenceService, settings: RenderSettings) -> str:
    return isvc.spec.image or (settings.vllm_image if isvc.spec.engine.backend == Backend.VLLM
                               else settings.runtime_image)


def _api_key_env(isvc: InferenceService) -> list[dict[str, Any]]:
    ref = isvc.spec.auth.api_key_secret_ref if isvc.spec.auth else None
    return pods.secret_env(API_KEY_ENV[Backend(isvc.spec.engine.backend)], ref)


def _command_and_env(isvc: InferenceService, inputs: ServingInputs) -> tuple[list[str], dict[str, str]]:
    if isvc.spec.engine.backend == Backend.VLLM:
        command = vllm_command(isvc, inputs)
        return command.argv, {"PYTHONUNBUFFERED": "1", **command.env}
    return ["kubetune", "serve", f"{pods.CONFIG_DIR}/{CONFIG_KEY}"], {"PYTHONUNBUFFERED": "1"}


def _container(isvc: InferenceService, inputs: ServingInputs, settings: RenderSettings,
               mounts: list[dict[str, Any]]) -> dict[str, Any]:
    spec = isvc.spec
    command, env = _command_and_env(isvc, inputs)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": _image(isvc, settings),
        "command": command,
        "ports": [{"name": "http", "containerPort": spec.port}],
        "env": pods.plain_env(env) + pods.secret_env("HF_TOKEN", spec.model.credentials_secret_ref)
        + _api_key_env(isvc) + pods.writable_env(),
        "volumeMounts": mounts,
        "securityContext": pods.security_context(),
        **_probes(isvc),
    }
    return pods.finish_container(container, settings.image_pull_policy, spec.resources.requests,
                                 spec.resources.limits, spec.resources.gpus_per_replica,
                                 spec.resources.gpu_resource_name)


def render_deployment(parent: dict[str, Any], isvc: InferenceService, inputs: ServingInputs,
                      settings: RenderSettings) -> dict[str, Any]:
    spec = isvc.spec
    name = parent["metadata"]["name"]
    hf = spec.engine.backend == Backend.HF
    volumes, mounts = pods.volumes_and_mounts(
        config_map_name(name) if hf else None, CONFIG_KEY if hf else None,
        pods.claims([inputs.model_uri, inputs.default_adapter, *(uri for _, uri in inputs.adapters)]),
        spec.shm_size)
    containers = [_container(isvc, inputs, settings, mounts)]
    if runtime_adapters(isvc):
        keep = inputs.name if inputs.default_adapter else None
        containers.append(adapters_sidecar(parent, isvc, _image(isvc, settings), keep, settings.image_pull_policy,
                                           _api_key_env(isvc)))
        volumes = volumes + adapters_volumes(parent)
    pod_spec: dict[str, Any] = {"securityContext": pods.pod_security_context(settings.run_as_user),
                                "containers": containers, "volumes": volumes, **pods.scheduling(spec)}
    # the adapters sidecar reports into the InferenceService status with the runtime identity
    account = spec.service_account_name or settings.service_account(parent["kind"]) or (
        settings.runtime_service_account if runtime_adapters(isvc) else None)
    if account:
        pod_spec["serviceAccountName"] = account
    if not spec.service_account_name:
        pod_spec["automountServiceAccountToken"] = False  # the server never talks to the API
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(parent, name, queue_name=spec.queue_name),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {owner_label(parent["kind"]): name}},
            "template": {
                "metadata": {"labels": child_labels(parent, spec.queue_name),
                             "annotations": {SPEC_HASH: template_hash(isvc, inputs)}},
                "spec": pod_spec,
            },
        },
    }


def render_service(parent: dict[str, Any], isvc: InferenceService) -> dict[str, Any]:
    name = parent["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(parent, name),
        "spec": {
            "type": "ClusterIP",
            "selector": {owner_label(parent["kind"]): name},
            "ports": [{"name": "http", "port": isvc.spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_serving(parent: dict[str, Any], isvc: InferenceService, inputs: ServingInputs,
                   settings: RenderSettings) -> list[dict[str, Any]]:
    """Children in apply order: [ConfigMap: hf serve config, or vLLM adapter list], Service, Deployment."""
    config = [render_config_map(parent, isvc, inputs)] if isvc.spec.engine.backend == Backend.HF else []
    if runtime_adapters(isvc):
        config = [render_adapters_config_map(parent, inputs.adapters)]
    return [*config, render_service(parent, isvc), render_deployment(parent, isvc, inputs, settings)]


def selector(parent: dict[str, Any]) -> str:
    """The label selector string of the pods, for the scale subresource."""
    return f"{owner_label(parent['kind'])}={parent['metadata']['name']}"
