"""InferenceService: resolve model and adapters, check they fit together, apply Deployment + Service."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetune.api.common import ArtifactType
from kubetune.api.conditions import Reason
from kubetune.api.inferenceservice import InferenceService
from kubetune.lifecycle.inferenceservice import OWNED, ServingObservation, derive_inferenceservice_status
from kubetune.lifecycle.inputs import Rejection
from kubetune.lifecycle.sources import references
from kubetune.uris import UriError
from kubetune_operator.kinds import DEPLOYMENT, INFERENCESERVICE
from kubetune_operator.kube import Invalid
from kubetune_operator.policy import check_engine_args
from kubetune_operator.reconcile.base import (
    Context,
    Refused,
    apply_children,
    fetch_refs,
    get_owned,
    parse_error,
    write_status,
)
from kubetune_operator.render import pods
from kubetune_operator.render.serving import ServingInputs, render_serving, selector, url
from kubetune_operator.resolve import Artifact, first_unresolved, ref_of, resolve_source, same_uri
from kubetune_operator.status.deployments import observe_deployment

WRONG_ARTIFACT_TYPE = "WrongArtifactType"


def served_name(body: dict[str, Any], isvc: InferenceService) -> str:
    return isvc.spec.served_model_name or body["metadata"]["name"]


def serving_inputs(name: str, model: Artifact, adapters: list[tuple[str, Artifact]]) -> ServingInputs | Rejection:
    """Decide what the server loads, or why it cannot.

    A model that is a LoRA adapter (a FineTuneJob's output) is served as its base with the adapter answering to
    ``<name>``. Every referenced adapter must be a lora-adapter whose recorded base is the served model (or the
    model the served one was exported from).
    """
    loaded: list[tuple[str, str]] = []
    model_uri, default_adapter = model.uri, None
    if model.artifact_type == ArtifactType.LORA_ADAPTER:
        if not model.base_model_uri:
            return Rejection(WRONG_ARTIFACT_TYPE, f"{model.origin_text} is an adapter without a recorded base model")
        model_uri, default_adapter = model.base_model_uri, model.uri
    bases = {u.rstrip("/") for u in (model_uri, model.base_model_uri if model_uri == model.uri else None) if u}
    for adapter_name, art in adapters:
        if art.origin and art.artifact_type != ArtifactType.LORA_ADAPTER:
            return Rejection(WRONG_ARTIFACT_TYPE, f"adapter {adapter_name!r}: {art.origin_text} wrote a "
                             f"{art.artifact_type}, not a lora-adapter; serve it as spec.model instead")
        if art.base_model_uri and not any(same_uri(art.base_model_uri, b) for b in bases):
            return Rejection(Reason.ADAPTER_BASE_MISMATCH, f"adapter {adapter_name!r} ({art.origin_text or art.uri}) "
                             f"was trained on {art.base_model_uri}, but this service serves {model_uri}")
        loaded.append((adapter_name, art.uri))
    return ServingInputs(model_uri=model_uri, name=name, adapters=tuple(loaded), default_adapter=default_adapter)


def reconcile_inferenceservice(ctx: Context, namespace: str, name: str) -> None:
    with ctx.locks("InferenceService", namespace, name):
        body = ctx.kube.get(INFERENCESERVICE, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        _reconcile(ctx, body)


def _reconcile(ctx: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    now = ctx.now()
    base: dict[str, Any] = {"generation": meta.get("generation", 1), "now": now, "selector": selector(body)}
    try:
        isvc = InferenceService.model_validate(body)
    except ValidationError as exc:
        obs = ServingObservation(**base, rejection=parse_error("InferenceService", exc))
        write_status(ctx, INFERENCESERVICE, body, derive_inferenceservice_status(body.get("status"), obs), OWNED, now)
        return
    fetched = fetch_refs(ctx, meta["namespace"], references(isvc))
    model = resolve_source(isvc.spec.model, fetched)
    adapters = [(a.name, resolve_source(a, fetched)) for a in isvc.spec.adapters or []]
    deployment = get_owned(ctx, DEPLOYMENT, body, meta["name"])
    unresolved = first_unresolved([model, *(r for _, r in adapters)])
    if unresolved is not None:
        obs = ServingObservation(**base, unresolved=unresolved, serving=observe_deployment(deployment))
    else:
        assert isinstance(model, Artifact)
        inputs = serving_inputs(served_name(body, isvc), model, [(n, a) for n, a in adapters
                                                                 if isinstance(a, Artifact)])
        obs = _deploy(ctx, body, isvc, inputs, base, deployment)
    write_status(ctx, INFERENCESERVICE, body, derive_inferenceservice_status(body.get("status"), obs), OWNED, now)


def _deploy(ctx: Context, body: dict[str, Any], isvc: InferenceService, inputs: ServingInputs | Rejection,
            base: dict[str, Any], deployment: dict[str, Any] | None) -> ServingObservation:
    denied = check_engine_args(ctx.policy, isvc.spec.engine.extra_args)
    if denied:
        inputs = Rejection(*denied)
    if isinstance(inputs, Rejection):
        return ServingObservation(**base, rejection=inputs, serving=observe_deployment(deployment))
    try:
        for uri in (inputs.model_uri, inputs.default_adapter, *(u for _, u in inputs.adapters)):
            if uri:
                pods.pod_path(uri)
        deployment = apply_children(ctx, body, render_serving(body, isvc, inputs, ctx.settings))["Deployment"]
    except (UriError, Invalid) as exc:
        return ServingObservation(**base, rejection=Rejection("InvalidSpec", str(exc)),
                                  serving=observe_deployment(deployment))
    except Refused as exc:
        return ServingObservation(**base, rejection=exc.rejection, serving=observe_deployment(deployment))
    return ServingObservation(
        **base, url=url(body, isvc.spec.port), served_models=tuple(inputs.served_models(isvc.spec.engine.backend)),
        resolved_model={"uri": inputs.model_uri, **({"source": _origin(isvc)} if _origin(isvc) else {})},
        resolved_adapters=tuple({"name": n, "uri": u} for n, u in _served_adapters(inputs)),
        deployment_name=body["metadata"]["name"], serving=observe_deployment(deployment),
    )


def _origin(isvc: InferenceService) -> str | None:
    ref = ref_of(isvc.spec.model)
    return f"{ref[0]}/{ref[1]}" if ref else None


def _served_adapters(inputs: ServingInputs) -> list[tuple[str, str]]:
    return ([(inputs.name, inputs.default_adapter)] if inputs.default_adapter else []) + list(inputs.adapters)
