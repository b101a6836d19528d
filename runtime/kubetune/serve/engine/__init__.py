"""The engine protocol: what the OpenAI layer asks of an engine, independent of how it generates.

An engine takes prompt token ids plus sampling parameters and yields text deltas per sequence; it applies
sampling, penalties, stop tokens and stop strings itself, so the OpenAI layer never sees text past a stop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingParams:
    """Per-request generation settings, already validated and defaulted by the OpenAI layer.

    ``temperature == 0`` is greedy. ``top_k == 0`` disables top-k. ``presence_penalty``/``frequency_penalty``
    have OpenAI's meaning (additive logit penalties over the tokens generated so far). ``logprobs`` is None
    (off) or how many alternatives to report per token (0 = only the chosen token).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    n: int = 1


@dataclass(frozen=True)
class GenerationRequest:
    """One request: ``n`` sequences continuing ``prompt_ids`` with the adapter ``adapter`` (None = base model).

    ``keep_token_ids`` are special tokens that stay in the text (tool-call markers); other special tokens are
    dropped from it. ``stream`` False says the caller reads only whole sequences: an engine may then send one delta
    per sequence, at its end, holding all of its text and log-probabilities (the same text as streamed deltas).
    ``images`` are a vision-language model's pixel inputs for the image tokens of the prompt, as its processor
    returns them (``pixel_values``, ``image_grid_thw``, ...); None for a text prompt.
    """

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None = None
    keep_token_ids: frozenset[int] = frozenset()
    stream: bool = True
    images: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Delta:
    """New output of sequence ``index``: text since the last delta, and ``finish_reason`` on the last one.

    ``completion_tokens`` counts the sequence's generated tokens so far (the stop token included, as OpenAI
    counts usage).
    """

    index: int
    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: tuple[TokenLogprob, ...] = field(default_factory=tuple)


class EngineError(RuntimeError):
    """The engine failed while generating (out of memory, a broken model) or is shutting down; reported as a
    500 without a trace. It fails only the request it names, never the others batched with it."""


class Engine(Protocol):
    """What the OpenAI layer needs from an engine."""

    tokenizer: PreTrainedTokenizerBase
    max_model_len: int
    vocab_size: int  # prompt token ids must be in [0, vocab_size): the tokenizer's and the model's, both

    @property
    def adapters(self) -> Sequence[str]:
        """Names of the loaded adapters (read-only here, so engines may keep them in any sequence)."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream deltas for every sequence of ``request`` until each has a finish_reason."""
        ...

    def close(self) -> None:
        """Stop background work and release the model."""
        ...
