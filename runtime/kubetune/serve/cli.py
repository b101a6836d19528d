"""`kubetune serve FILE` (alias `api`): FILE is a runtime config (LLaMA-Factory keys) or an InferenceService.

Endpoint settings come from flags, else LLaMA-Factory's API_HOST / API_PORT / API_KEY / API_MODEL_NAME
variables, else the file. ``infer_backend: vllm`` (or ``engine.backend: vllm``) runs vLLM's own server instead
of the in-process engine.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kubetune.api.inferenceservice import InferenceService
from kubetune.config.files import ConfigError, fail, is_custom_resource, parse_overrides, read_document, validate
from kubetune.config.mapping.serve import resolve_inferenceservice
from kubetune.config.serve_args import ServeConfig, apply_endpoint_overrides
from kubetune.uris import UriError, resolver_for_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del command
    parser.add_argument("file", help="serve config (LLaMA-Factory keys) or an InferenceService resource (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys (flat configs)")
    parser.add_argument("--host", help="bind address (env API_HOST; default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (env API_PORT; default 8000)")
    parser.add_argument("--api-key", help="require this Bearer key (env API_KEY)")
    parser.add_argument("--served-model-name", help="OpenAI name of the model (env API_MODEL_NAME)")
    parser.add_argument("--threads", type=int, help="hf engine: torch intra-op threads (default: from the CPU "
                        "quota and cpuset; overrides the file's threads / spec.engine.threads)")
    parser.add_argument("--pvc-root", help="directory holding pvc://<claim>/ paths (default /mnt/pvc)")


def read_serve_config(file: str, overrides: list[str], pvc_root: str | None = None) -> ServeConfig:
    """The serve config in ``file`` (flat config with ``key=value`` overrides, or an InferenceService)."""
    doc = read_document(file)
    if is_custom_resource(doc):
        if doc.data.get("kind") != "InferenceService":
            raise fail(doc, "kind", f"expected InferenceService (or a flat serve config), got {doc.data.get('kind')!r}")
        isvc = validate(InferenceService, doc.data, doc)
        return resolve_inferenceservice(isvc, resolver_for_file(file, pvc_root))
    return validate(ServeConfig, {**doc.data, **parse_overrides(overrides)}, doc)


def load_serve_config(args: argparse.Namespace, env: dict[str, str]) -> ServeConfig:
    """The typed serve config for the command line and environment (``env`` is passed in, not read here)."""
    config = read_serve_config(args.file, args.overrides, args.pvc_root)
    flags: dict[str, Any] = {"host": args.host, "port": args.port, "api_key": args.api_key,
                             "served_model_name": args.served_model_name}
    config = apply_endpoint_overrides(config, flags, env)
    if getattr(args, "threads", None) is not None:
        config = ServeConfig.model_validate({**config.model_dump(exclude_unset=True), "threads": args.threads})
    return config


def run(args: argparse.Namespace, command: str) -> int:
    del command
    try:
        config = load_serve_config(args, dict(os.environ))
    except (ConfigError, UriError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if config.backend == "vllm":
        return _run_vllm(config)
    return _run_hf(config)


def _run_vllm(config: ServeConfig) -> int:
    from kubetune.serve.engine.vllm import VllmError, launch_vllm, sigterm_as_interrupt

    with sigterm_as_interrupt():
        try:
            process = launch_vllm(config)
        except VllmError as exc:
            print(f"kubetune serve: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            return process.wait()


def _run_hf(config: ServeConfig) -> int:
    from kubetune.serve.threads import prepare_environment

    # OpenMP reads its wait policy when torch loads it, so this comes before anything imports torch
    added = prepare_environment(os.environ) if "torch" not in sys.modules else {}
    import uvicorn

    from kubetune.artifacts import ArtifactError
    from kubetune.serve.http import uvicorn_config
    from kubetune.serve.server import build_server

    try:
        server = build_server(config)
    except (ArtifactError, OSError, ValueError) as exc:
        print(f"kubetune serve: cannot load the model: {exc}", file=sys.stderr)
        return 1
    threads = getattr(server.engine, "threads", None)
    if threads is not None:
        waits = ", ".join(f"{k}={v}" for k, v in added.items())
        print(threads.describe() + (f"; set {waits}" if waits else ""), flush=True)
    names = ", ".join(server.chat.models)
    print(f"serving {names} on http://{config.host}:{config.port}/v1 (hf engine)", flush=True)
    try:
        uvicorn.Server(uvicorn_config(server.app, config.host, config.port, config.limits)).run()
    finally:
        server.engine.close()
    return 0
