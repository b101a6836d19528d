"""`kubetune operator`: run the operator against the current kubeconfig (or in-cluster), all namespaces by default."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading

from kubetune_operator.policy import PolicyError, load_policy
from kubetune_operator.settings import (
    DEFAULT_RUNTIME_IMAGE,
    DEFAULT_VLLM_IMAGE,
    POD_USER,
    OperatorConfig,
    RenderSettings,
)


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("-n", "--namespace", action="append", default=[], dest="namespaces",
                        help="watch only this namespace (repeatable; globs allowed); default: all namespaces")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, else $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", default=True,
                      help="run without peering (default; deploy exactly one replica)")
    mode.add_argument("--peering", metavar="NAME",
                      help="coordinate with other kopf operators through the KopfPeering object NAME (its CRD "
                           "must be installed); peering pauses lower-priority peers but is not leader election")
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument("--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--runtime-image", default=DEFAULT_RUNTIME_IMAGE,
                        help="image of training, export and hf-serving pods (default %(default)s)")
    parser.add_argument("--vllm-image", default=DEFAULT_VLLM_IMAGE,
                        help="image of vLLM serving pods, with kubetune in it for the adapters sidecar "
                        "(images/Dockerfile.vllm; default %(default)s)")
    parser.add_argument("--runtime-service-account", default="kubetune-runtime",
                        help="ServiceAccount of training and export pods in each namespace")
    parser.add_argument("--policy", metavar="FILE",
                        help="the cluster admin's policy (YAML): allowed images and ServiceAccounts, default "
                             "ServiceAccount per kind, more denied engine flags; default: only the configured "
                             "images and default ServiceAccounts (docs/security.md)")
    parser.add_argument("--run-as-user", type=int, default=POD_USER,
                        help="non-root uid (and gid) of every pod the operator creates (default %(default)s)")
    parser.add_argument("--image-pull-policy", choices=("Always", "IfNotPresent", "Never"),
                        help="imagePullPolicy of the pods the operator creates")
    parser.add_argument("--resync", type=float, default=300.0, metavar="SECONDS",
                        help="re-check every unfinished object this often (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    """The typed configuration, with the policy file read once here (a bad file stops the operator at start)."""
    policy = load_policy(args.policy)
    accounts = policy.service_accounts.defaults
    return OperatorConfig(
        namespaces=tuple(args.namespaces),
        kubeconfig=args.kubeconfig,
        context=args.context,
        standalone=args.peering is None,
        peering=args.peering,
        priority=args.priority,
        liveness=args.liveness,
        resync_seconds=args.resync,
        render=RenderSettings(
            runtime_image=args.runtime_image, vllm_image=args.vllm_image, image_pull_policy=args.image_pull_policy,
            runtime_service_account=accounts.get("FineTuneJob") or args.runtime_service_account,
            export_service_account=accounts.get("ModelExport", args.runtime_service_account),
            serving_service_account=accounts.get("InferenceService"), run_as_user=args.run_as_user),
        policy=policy,
    )


def serve(cfg: OperatorConfig, stop: threading.Event | None = None, ready: threading.Event | None = None) -> None:
    """Run the operator until ``stop`` is set (or forever). Tests call this in a thread."""
    import kopf

    from kubetune_operator.handlers import build_registry, operator_settings
    from kubetune_operator.kube import Kube
    from kubetune_operator.reconcile.base import Context

    ctx = Context(kube=Kube.connect(cfg.kubeconfig, cfg.context), settings=cfg.render, policy=cfg.policy)
    asyncio.run(kopf.operator(
        registry=build_registry(ctx, cfg),
        settings=operator_settings(cfg),
        standalone=cfg.standalone,
        peering_name=cfg.peering,
        priority=cfg.priority,
        clusterwide=cfg.clusterwide,
        namespaces=cfg.namespaces,
        liveness_endpoint=cfg.liveness,
        stop_flag=stop,
        ready_flag=ready,
    ))


def run(args: argparse.Namespace, command: str) -> int:
    del command
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args)
    except PolicyError as exc:
        print(f"kubetune operator: {exc}", file=sys.stderr)
        return 2
    serve(cfg)
    return 0
