"""Wire a ServeConfig into a running server: the engine by backend (a dict), the services, the app."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import FastAPI

from kubetune.config.serve_args import ServeConfig
from kubetune.serve.engine import Engine
from kubetune.serve.metrics import Metrics
from kubetune.serve.openai.admission import Admission
from kubetune.serve.openai.chat import ChatService
from kubetune.serve.openai.completions import CompletionService
from kubetune.serve.openai.service import model_table
from kubetune.serve.router import create_app


def _load_hf(config: ServeConfig) -> Engine:
    from kubetune.serve.engine.hf_load import load_hf_engine

    return load_hf_engine(config)


# In-process engines. vLLM is not one: `kubetune serve` runs vLLM's own server (kubetune.serve.engine.vllm).
IN_PROCESS_ENGINES: dict[str, Callable[[ServeConfig], Engine]] = {"hf": _load_hf}


@dataclass
class Server:
    app: FastAPI
    engine: Engine
    chat: ChatService
    metrics: Metrics


def build_server(config: ServeConfig, engine: Engine | None = None) -> Server:
    """The app for ``config``; ``engine`` defaults to loading the configured in-process engine."""
    engine = engine or IN_PROCESS_ENGINES[config.backend](config)
    metrics = Metrics()
    models = model_table(config)
    limits = config.limits
    # chat and completions share the engine, so they share its slots and the tokenizer thread
    admission = Admission(config.max_batch_size, limits.max_queued_sequences, limits.max_sequences_per_request,
                          metrics)
    pool = ThreadPoolExecutor(1, thread_name_prefix="kubetune-tokenize")
    chat = ChatService(engine, config, models, metrics, admission, pool)
    completions = CompletionService(engine, config, models, metrics, admission, pool)
    return Server(create_app(chat, completions, metrics, config.api_key, limits), engine, chat, metrics)
