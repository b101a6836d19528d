"""ModelExport -> ConfigMap (export.yaml) + a batch/v1 Job running ``kubetune export /etc/kubetune/export.yaml``.

export.yaml is the pod contract (:func:`kubetune.config.mapping.export.export_pod_document`): the ModelExport itself
with references replaced by the URIs they resolved to, so the pod needs no API access to find its inputs, and the
export runs exactly as ``kubetune run`` runs the same document locally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kubetune.api.modelexport import ModelExport
from kubetune.config.mapping.export import export_pod_document
from kubetune_operator.meta import child_labels, child_metadata
from kubetune_operator.render import environment, pods
from kubetune_operator.settings import RenderSettings

CONFIG_KEY = "export.yaml"
CONTAINER = "export"


@dataclass(frozen=True)
class ExportInputs:
    """The concrete model (and adapter) to export and the fresh output directory."""

    model_uri: str
    output_uri: str  # <output.uri>/<name>-<uid8>/
    adapter_uri: str | None = None


def job_name(name: str) -> str:
    return f"{name}-export"


def config_map_name(name: str) -> str:
    return f"{name}-export-config"


def export_document(parent: dict[str, Any], mexp: ModelExport, inputs: ExportInputs) -> dict[str, Any]:
    """The ModelExport the pod runs (the pod contract), with its source rewritten to concrete URIs."""
    meta = parent["metadata"]
    return export_pod_document(mexp, model_uri=inputs.model_uri, adapter_uri=inputs.adapter_uri,
                               namespace=meta["namespace"], uid=meta["uid"])


def _read_uris(mexp: ModelExport, inputs: ExportInputs) -> list[str]:
    uris = [inputs.model_uri, inputs.adapter_uri]
    quant = mexp.spec.quantization
    if quant and quant.calibration:
        uris.append(quant.calibration.uri)
    return [u for u in uris if u]


def render_export(parent: dict[str, Any], mexp: ModelExport, inputs: ExportInputs,
                  settings: RenderSettings) -> list[dict[str, Any]]:
    """The ConfigMap and the Job, in apply order."""
    name = parent["metadata"]["name"]
    spec = mexp.spec
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(parent, config_map_name(name)),
        "data": {CONFIG_KEY: yaml.safe_dump(export_document(parent, mexp, inputs), sort_keys=False)},
    }
    volumes, mounts = pods.volumes_and_mounts(config_map_name(name), CONFIG_KEY,
                                              pods.claims(_read_uris(mexp, inputs), [inputs.output_uri]),
                                              spec.shm_size)
    source_model = spec.source.model
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.runtime_image,
        "command": ["kubetune", "export", f"{pods.CONFIG_DIR}/{CONFIG_KEY}"],
        "env": pods.plain_env({
            "KUBETUNE_MODELEXPORT": name,
            "KUBETUNE_NAMESPACE": parent["metadata"]["namespace"],
            "KUBETUNE_OWNER_UID": parent["metadata"]["uid"],
            "KUBETUNE_OUTPUT_URI": inputs.output_uri,
            "PYTHONUNBUFFERED": "1",
        }) + pods.secret_env("HF_TOKEN", source_model.credentials_secret_ref if source_model else None)
        + pods.writable_env(),
        "volumeMounts": mounts,
        "securityContext": pods.security_context(),
    }
    pods.finish_container(container, settings.image_pull_policy, spec.resources.requests, spec.resources.limits,
                          spec.resources.gpus, spec.resources.gpu_resource_name)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": spec.service_account_name or settings.service_account(parent["kind"]),
        "securityContext": pods.pod_security_context(settings.run_as_user),
        "containers": [container],
        "volumes": volumes,
        **pods.scheduling(spec),
    }
    environment.finish_pod(pod_spec, spec, main=CONTAINER, stage_image=container["image"],
                           read=_read_uris(mexp, inputs), output=inputs.output_uri)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(parent, job_name(name), queue_name=spec.queue_name),
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "template": {"metadata": {"labels": child_labels(parent)}, "spec": pod_spec},
        },
    }
    return [config_map, job]
