"""FineTuneJob: resolve inputs, build the runtime config, apply ConfigMap + launcher, mirror the launcher's state."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune.api.common import ArtifactType
from kubetune.api.conditions import Reason
from kubetune.api.finetunejob import FineTuneJob, Method
from kubetune.config import ConfigError, dump_config
from kubetune.config.mapping.train import runtime_config_from_finetunejob
from kubetune.lifecycle.runs import is_terminal
from kubetune.uris import UriError
from kubetune_operator.kinds import FINETUNEJOB, JOB, PYTORCHJOB
from kubetune_operator.kube import Invalid, KubeError
from kubetune_operator.meta import output_dir
from kubetune_operator.policy import check_runtime_config
from kubetune_operator.reconcile.base import (
    Context,
    Refused,
    apply_children,
    fetch_refs,
    get_owned,
    parse_error,
    reconcile_run,
    write_status,
)
from kubetune_operator.render import pods
from kubetune_operator.render.training import TrainInputs, launcher_kind, render_training
from kubetune_operator.resolve import Artifact, Ref, Resolution, first_unresolved, ref_of, resolve_source
from kubetune_operator.status.common import Rejection
from kubetune_operator.status.launchers import observe
from kubetune_operator.status.training import OWNED, TrainingObservation, derive_finetunejob_status


def model_sources(job: FineTuneJob) -> list[Any]:
    """Every model-like source of the spec: the base, the DPO reference model, the PPO reward model."""
    spec = job.spec
    sources: list[Any] = [spec.model]
    if spec.preference and spec.preference.ref_model:
        sources.append(spec.preference.ref_model)
    if spec.ppo and spec.ppo.reward_model and not spec.ppo.reward_model.url:
        sources.append(spec.ppo.reward_model)
    return sources


def references(job: FineTuneJob) -> list[Ref]:
    return [ref for ref in map(ref_of, model_sources(job)) if ref is not None]


def read_uris(job: FineTuneJob, resolutions: list[Resolution]) -> tuple[str, ...]:
    """Every location the pods read: models (resolved), datasets, dataset registries and benchmark folders."""
    uris = [r.uri for r in resolutions if isinstance(r, Artifact)]
    for ds in [*job.spec.datasets, *(job.spec.eval_datasets or [])]:
        uris += [u for u in (ds.uri, ds.registry_uri) if u]
    uris += [b.task_dir for b in (job.spec.evaluation.benchmarks if job.spec.evaluation else [])]
    return tuple(uris)


def runtime_config(job: FineTuneJob, out_uri: str, by_ref: dict[Ref, Artifact]) -> dict[str, Any]:
    """The flat runtime config for the pod, or a Rejection-worthy ConfigError / UriError."""
    cfg = runtime_config_from_finetunejob(
        job, output_dir=pods.pod_path(out_uri), resolve=pods.pod_path,
        resolve_ref=lambda kind, name: by_ref[(kind, name)].uri,
    )
    return dump_config(cfg)


def rejection_of(exc: Exception) -> Rejection:
    """Accepted=False reason and message for what the runtime config (or a URI) rejected."""
    if isinstance(exc, ConfigError):
        paths = [e.path for e in exc.errors]
        if any(p.startswith("spec.extraArgs") for p in paths):
            reason = Reason.INVALID_EXTRA_ARGS
        elif any(p.rsplit(".", 1)[-1] == "template" for p in paths):
            reason = Reason.UNKNOWN_TEMPLATE
        else:
            reason = Reason.INVALID_SPEC
        return Rejection(reason, "; ".join(f"{e.path}: {e.message}" for e in exc.errors))
    return Rejection(Reason.INVALID_SPEC, str(exc))


def output_status(job: FineTuneJob, out_uri: str, base: Resolution) -> dict[str, Any]:
    """status.output once the run succeeded: the directory, what it holds and the base it belongs to."""
    adapter = job.spec.method in (Method.LORA, Method.QLORA)
    out: dict[str, Any] = {"uri": out_uri,
                           "artifactType": ArtifactType.LORA_ADAPTER if adapter else ArtifactType.FULL_MODEL}
    if isinstance(base, Artifact):
        base_model = {"uri": base.uri, "revision": base.base_model_revision if base.origin is None else None}
        out["baseModel"] = {k: v for k, v in base_model.items() if v}
    return out


def reconcile_finetunejob(ctx: Context, namespace: str, name: str) -> None:
    reconcile_run(ctx, FINETUNEJOB, namespace, name, is_terminal, _reconcile)


def _reconcile(ctx: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    now = ctx.now()
    try:
        job = FineTuneJob.model_validate(body)
    except ValidationError as exc:
        obs = TrainingObservation(meta.get("generation", 1), now, "PyTorchJob", meta["name"],
                                  rejection=parse_error("FineTuneJob", exc))
        write_status(ctx, FINETUNEJOB, body, derive_finetunejob_status(body.get("status"), obs), OWNED, now)
        return
    kind = launcher_kind(job)
    launcher_resource = JOB if kind == "Job" else PYTORCHJOB
    sources = model_sources(job)
    fetched = fetch_refs(ctx, meta["namespace"], references(job))
    resolutions = [resolve_source(s, fetched) for s in sources]
    unresolved = first_unresolved(resolutions)
    out_uri = output_dir(body, job.spec.output.uri)
    rejection = None
    launcher = get_owned(ctx, launcher_resource, body, meta["name"])
    if unresolved is None:
        by_ref = {r.origin: r for r in resolutions if isinstance(r, Artifact) and r.origin}
        try:
            config = runtime_config(job, out_uri, by_ref)
            denied = check_runtime_config(ctx.policy, config)
            if denied:
                raise Refused(Rejection(*denied))
            inputs = TrainInputs(output_uri=out_uri, read_uris=read_uris(job, resolutions))
            applied = apply_children(ctx, body, render_training(body, job, inputs, config, ctx.settings))
            launcher = applied[kind]
        except (ConfigError, UriError, Invalid) as exc:
            rejection = rejection_of(exc)
        except Refused as exc:
            rejection = exc.rejection
        except KubeError as exc:
            if exc.status != 404:
                raise
            rejection = Rejection("LauncherUnavailable", f"{kind} is not served by this cluster ({exc}); install "
                                  "the Kubeflow training-operator or set launcher: job")
    elif launcher is not None and not unresolved.final:
        unresolved = None  # started earlier: an input vanishing now does not stop a running job
    obs = TrainingObservation(
        generation=meta.get("generation", 1), now=now, launcher_kind=kind, launcher_name=meta["name"],
        rejection=rejection, unresolved=unresolved, launcher=observe(kind, launcher),
        suspend=job.spec.run_policy.suspend, queue_name=job.spec.queue_name,
        output=output_status(job, out_uri, resolutions[0]),
    )
    write_status(ctx, FINETUNEJOB, body, derive_finetunejob_status(body.get("status"), obs), OWNED, now)
