"""What chat and completions share: the model table, admission, prompt bounds and collecting engine output."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TypeVar

from kubetune.config.serve_args import ServeConfig
from kubetune.serve.engine import Delta, Engine, EngineError, GenerationRequest, TokenLogprob
from kubetune.serve.errors import bad_request, internal, unknown_model
from kubetune.serve.metrics import Metrics
from kubetune.serve.openai.admission import Admission, Ticket

T = TypeVar("T")


def model_table(config: ServeConfig, default_adapter_name: str = "default") -> dict[str, str | None]:
    """OpenAI model name -> engine adapter name (None = the bare base model)."""
    table: dict[str, str | None] = {config.model_name: default_adapter_name if config.default_adapter else None}
    table.update({a.name: a.name for a in config.lora_adapters})
    return table


@dataclass
class Choice:
    """The collected output of one sequence."""

    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.finish_reason = delta.finish_reason or self.finish_reason
        self.completion_tokens = delta.completion_tokens
        self.logprobs.extend(delta.logprobs)


@dataclass
class Service:
    """The engine plus the served model names; base of the chat and completions services."""

    engine: Engine
    config: ServeConfig
    models: dict[str, str | None]
    metrics: Metrics | None = None
    admission: Admission | None = None
    # Tokenizing and template rendering run here, off the event loop; one thread, as the tokenizer is shared.
    pool: Executor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="kubetune-tokenize"))

    def __post_init__(self) -> None:
        if self.admission is None:
            limits = self.config.limits
            self.admission = Admission(self.config.max_batch_size, limits.max_queued_sequences,
                                       limits.max_sequences_per_request, self.metrics)

    def adapter_for(self, model: str) -> str | None:
        if model not in self.models:
            raise unknown_model(model, list(self.models))
        return self.models[model]

    def check_prompt_chars(self, chars: int, param: str) -> None:
        """Refuse a prompt too long to be worth tokenizing (a 400 before any tokenizer work)."""
        limit = self.config.limits.prompt_chars(self.engine.max_model_len)
        if chars > limit:
            raise bad_request(f"the prompt is {chars} characters; this server takes at most {limit} "
                              f"(limits.max_prompt_chars; the model's context is {self.engine.max_model_len} "
                              "tokens)", param=param, code="context_length_exceeded")

    async def off_loop(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the tokenizer thread, so a long prompt never stalls other requests or /health."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def reserve(self, sequences: int, param: str = "n") -> Ticket:
        assert self.admission is not None
        return self.admission.reserve(sequences, param)

    async def deltas(self, request: GenerationRequest, ticket: Ticket) -> AsyncIterator[Delta]:
        """The engine's deltas once the request has its engine slots; engine failures become a 500."""
        assert self.admission is not None
        label = request.adapter or self.config.model_name
        async with self.admission.slots_for(ticket, request.params.n):
            if self.metrics:
                self.metrics.prompt_tokens.labels(label).inc(len(request.prompt_ids))
            try:
                async with aclosing(self.engine.generate(request)) as stream:
                    async for delta in stream:
                        if self.metrics and delta.finish_reason:
                            self.metrics.generated_tokens.labels(label).inc(delta.completion_tokens)
                        yield delta
            except EngineError as exc:
                raise internal() from exc

    async def collect(self, request: GenerationRequest, ticket: Ticket) -> list[Choice]:
        choices = [Choice() for _ in range(request.params.n)]
        async for delta in self.deltas(request, ticket):
            choices[delta.index].add(delta)
        return choices


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"
