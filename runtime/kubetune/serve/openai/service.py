"""What chat and completions share: the model table, prompt token checks and collecting engine output."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from kubetune.serve.config import ServeConfig
from kubetune.serve.engine import Delta, Engine, EngineError, GenerationRequest, TokenLogprob
from kubetune.serve.errors import internal, unknown_model
from kubetune.serve.metrics import Metrics


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

    def adapter_for(self, model: str) -> str | None:
        if model not in self.models:
            raise unknown_model(model, list(self.models))
        return self.models[model]

    async def deltas(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """The engine's deltas; engine failures become a 500 without internals."""
        label = request.adapter or self.config.model_name
        if self.metrics:
            self.metrics.prompt_tokens.labels(label).inc(len(request.prompt_ids))
        try:
            async for delta in self.engine.generate(request):
                if self.metrics and delta.finish_reason:
                    self.metrics.generated_tokens.labels(label).inc(delta.completion_tokens)
                yield delta
        except EngineError as exc:
            raise internal() from exc

    async def collect(self, request: GenerationRequest) -> list[Choice]:
        choices = [Choice() for _ in range(request.params.n)]
        async for delta in self.deltas(request):
            choices[delta.index].add(delta)
        return choices


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"
