"""FineTuneJob -> ConfigMap (the runtime config) + PyTorchJob, or + indexed Job and headless Service.

The pods run ``kubetune train /etc/kubetune/config.yaml``: one mounted file, the same one ``kubetune train FILE``
takes on a laptop. The PyTorchJob controller injects the rendezvous environment (``PET_NNODES``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR``, ...); with ``launcher: job`` the same variables are rendered here from the
Job's completion index, so the runtime maps one set of variables to torchrun either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kubetune.api.finetunejob import FineTuneJob, Launcher
from kubetune_operator.kinds import owner_label
from kubetune_operator.meta import child_labels, child_metadata
from kubetune_operator.render import environment, pods
from kubetune_operator.settings import RenderSettings

CONFIG_KEY = "config.yaml"
CONTAINER = "pytorch"  # the PyTorchJob webhook requires this container name
PORT_NAME = "pytorchjob-port"
MASTER_PORT = 23456
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


@dataclass(frozen=True)
class TrainInputs:
    """What the render needs besides the spec: the concrete locations resolved from URIs and references."""

    output_uri: str  # <output.uri>/<name>-<uid8>/
    read_uris: tuple[str, ...] = ()  # every input location, for volumes


def config_map_name(name: str) -> str:
    return f"{name}-train-config"


def headless_service_name(name: str) -> str:
    return f"{name}-nodes"


def nproc_per_node(job: FineTuneJob) -> int:
    """Processes per pod: one per GPU, and one on CPU (torchrun's "auto" would start one per CPU core)."""
    return max(job.spec.resources.gpus_per_node, 1)


def render_config_map(parent: dict[str, Any], runtime_config: dict[str, Any]) -> dict[str, Any]:
    """The owned ConfigMap holding the runtime config as YAML."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(parent, config_map_name(parent["metadata"]["name"])),
        "data": {CONFIG_KEY: yaml.safe_dump(runtime_config, sort_keys=False)},
    }


def _env(parent: dict[str, Any], job: FineTuneJob, inputs: TrainInputs) -> list[dict[str, Any]]:
    meta = parent["metadata"]
    env = pods.plain_env({
        "KUBETUNE_FINETUNEJOB": meta["name"],
        "KUBETUNE_NAMESPACE": meta["namespace"],
        "KUBETUNE_OWNER_UID": meta["uid"],
        "KUBETUNE_OUTPUT_URI": inputs.output_uri,
        "KUBETUNE_OUTPUT_DIR": pods.pod_path(inputs.output_uri),
        "PYTHONUNBUFFERED": "1",
    })
    return env + pods.secret_env("HF_TOKEN", job.spec.model.credentials_secret_ref)


def _rendezvous_env(name: str, nodes: int, nproc: int) -> list[dict[str, Any]]:
    """What the PyTorchJob controller would inject, for an indexed Job: node rank = completion index."""
    master = f"{name}-0.{headless_service_name(name)}"
    env = pods.plain_env({
        "PET_NNODES": str(nodes),
        "PET_NPROC_PER_NODE": str(nproc),
        "PET_MASTER_ADDR": master,
        "PET_MASTER_PORT": str(MASTER_PORT),
        "MASTER_ADDR": master,
        "MASTER_PORT": str(MASTER_PORT),
    })
    return [*env, {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}]


def pod_template(parent: dict[str, Any], job: FineTuneJob, inputs: TrainInputs, settings: RenderSettings,
                 extra_env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The training pod: one container running the runtime on the mounted config."""
    spec = job.spec
    res = spec.resources
    volumes, mounts = pods.volumes_and_mounts(
        config_map_name(parent["metadata"]["name"]), CONFIG_KEY,
        pods.claims(inputs.read_uris, [inputs.output_uri]), spec.shm_size,
    )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or settings.runtime_image,
        "command": ["kubetune", "train", f"{pods.CONFIG_DIR}/{CONFIG_KEY}"],
        "ports": [{"name": PORT_NAME, "containerPort": MASTER_PORT}],
        "env": _env(parent, job, inputs) + (extra_env or []) + pods.writable_env(),
        "volumeMounts": mounts,
        "securityContext": pods.security_context(),
    }
    pods.finish_container(container, settings.image_pull_policy, res.requests, res.limits, res.gpus_per_node,
                          res.gpu_resource_name)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": spec.service_account_name or settings.service_account(parent["kind"]),
        "securityContext": pods.pod_security_context(settings.run_as_user),
        "containers": [container],
        "volumes": volumes,
        **pods.scheduling(spec),
    }
    environment.finish_pod(pod_spec, spec, main=CONTAINER, stage_image=container["image"], read=inputs.read_uris,
                           output=inputs.output_uri)
    return {"metadata": {"labels": child_labels(parent)}, "spec": pod_spec}


def _suspend(job: FineTuneJob) -> dict[str, bool]:
    """With a Kueue queue, Kueue owns suspension (it admits the job); the operator only ever asks to suspend."""
    if job.spec.queue_name and not job.spec.run_policy.suspend:
        return {}
    return {"suspend": job.spec.run_policy.suspend}


def render_pytorchjob(parent: dict[str, Any], job: FineTuneJob, inputs: TrainInputs,
                      settings: RenderSettings) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: one Master and nodes-1 Workers running the same pod."""
    policy = job.spec.run_policy
    run_policy: dict[str, Any] = {"backoffLimit": policy.backoff_limit, "cleanPodPolicy": "None", **_suspend(job)}
    if policy.active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    template = pod_template(parent, job, inputs, settings)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if job.spec.resources.nodes > 1:
        replicas["Worker"] = {"replicas": job.spec.resources.nodes - 1, "restartPolicy": "OnFailure",
                              "template": template}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": child_metadata(parent, parent["metadata"]["name"], queue_name=job.spec.queue_name),
        "spec": {"nprocPerNode": str(nproc_per_node(job)), "runPolicy": run_policy, "pytorchReplicaSpecs": replicas},
    }


def render_headless_service(parent: dict[str, Any]) -> dict[str, Any]:
    """Stable DNS names <job>-<index>.<service> for the indexed Job's pods (the rendezvous address)."""
    name = parent["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(parent, headless_service_name(name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {owner_label(parent["kind"]): name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


def render_indexed_job(parent: dict[str, Any], job: FineTuneJob, inputs: TrainInputs,
                       settings: RenderSettings) -> dict[str, Any]:
    """A batch/v1 Job with one completion index per node; pod failures count against backoffLimit."""
    name = parent["metadata"]["name"]
    nodes = job.spec.resources.nodes
    policy = job.spec.run_policy
    template = pod_template(parent, job, inputs, settings, _rendezvous_env(name, nodes, nproc_per_node(job)))
    template["spec"].update({"subdomain": headless_service_name(name), "restartPolicy": "Never"})
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": policy.backoff_limit,
        **_suspend(job),
        "template": template,
    }
    if policy.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(parent, name, queue_name=job.spec.queue_name),
        "spec": spec,
    }


def render_training(parent: dict[str, Any], job: FineTuneJob, inputs: TrainInputs, runtime_config: dict[str, Any],
                    settings: RenderSettings) -> list[dict[str, Any]]:
    """All children of a FineTuneJob, in apply order (the config before the pods that mount it)."""
    config = render_config_map(parent, runtime_config)
    if job.spec.launcher == Launcher.JOB:
        return [config, render_headless_service(parent), render_indexed_job(parent, job, inputs, settings)]
    return [config, render_pytorchjob(parent, job, inputs, settings)]


def launcher_kind(job: FineTuneJob) -> str:
    return "Job" if job.spec.launcher == Launcher.JOB else "PyTorchJob"
