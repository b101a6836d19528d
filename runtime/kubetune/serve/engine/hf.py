"""The ``hf`` engine: transformers models (CPU or GPU) with step-level continuous batching.

One worker thread owns the model. Each step it (1) admits waiting requests: prefills them as a padded batch and
joins them to the running rows, (2) samples one token per row with that row's own settings, (3) sends text deltas
to the waiting coroutines (streaming requests each step, others once at the end, so a request that does not
stream never wakes the event loop per token) and retires finished rows, (4) runs one forward pass for all remaining
rows. Rows of different LoRA adapters share a forward pass through peft's per-row ``adapter_names``; DoRA adapters
cannot, so then a batch only takes rows of the adapter it started with.

A failure fails only the request it belongs to: new requests are prefilled apart from the running rows (and
one by one when their joint prefill fails), so a bad request never takes the batch down with it. On close, every
request still waiting or running gets an EngineError at once, so no client waits for an engine that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kubetune.serve.engine import Delta, EngineError, GenerationRequest, TokenLogprob
from kubetune.serve.engine.batch import BatchState, can_join, left_pad
from kubetune.serve.engine.sampling import OpenAIPenaltyLogitsProcessor, RowwiseSamplingWarper, sample_rows
from kubetune.serve.engine.textstream import IncrementalDecoder, SequenceText, StopStringFilter
from kubetune.serve.engine.vision import one_adapter, prefill_inputs
from kubetune.serve.threads import ThreadPlan

log = logging.getLogger(__name__)
BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(eq=False)
class _Request:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    generator: torch.Generator | None
    cancelled: bool = False


@dataclass(eq=False)
class _Row:
    owner: _Request
    index: int
    text: SequenceText
    held_text: str = ""  # output not sent yet: a request that does not stream gets it all with its last delta
    held_logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def params(self):
        return self.owner.request.params


@dataclass
class HFEngine:
    """Serve ``model`` (a transformers model, or a peft model holding named adapters) with ``tokenizer``."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    stop_ids: frozenset[int]
    adapters: tuple[str, ...] = ()
    max_model_len: int = 2048
    max_batch_size: int = 16
    mixed_adapters: bool = True
    threads: ThreadPlan | None = None  # how torch's pools were sized for this engine (None: left as they were)
    processor: Any = None  # a vision-language model's processor (images in chat requests); None = text only
    _inbox: queue.Queue = field(default_factory=queue.Queue, init=False)
    _waiting: list[_Request] = field(default_factory=list, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        # torch types a module's attributes as Tensor | Module; an embedding's num_embeddings is an int
        rows = self.model.get_input_embeddings().num_embeddings
        self.vocab_size = min(len(self.tokenizer), int(rows))  # type: ignore[arg-type]
        added = getattr(self.tokenizer, "added_tokens_decoder", {})
        self.special = frozenset(self.tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._thread = threading.Thread(target=self._run, name="kubetune-hf-engine", daemon=True)
        self._thread.start()

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[Delta, None]:
        """Stream the deltas of every sequence of ``request``; closing the iterator cancels the request."""
        if self._stopping.is_set():
            raise EngineError("the engine is shutting down")
        if not request.prompt_ids or not all(0 <= i < self.vocab_size for i in request.prompt_ids):
            raise EngineError(f"prompt token ids must be 0 <= id < {self.vocab_size} and at least one")
        generator = None
        if request.params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(request.params.seed)
        item = _Request(request, asyncio.get_running_loop(), asyncio.Queue(), generator)
        self._inbox.put(item)
        finished = 0
        try:
            while finished < request.params.n:
                delta = await item.out.get()
                if isinstance(delta, BaseException):
                    raise EngineError(str(delta)) from delta
                finished += delta.finish_reason is not None
                yield delta
        finally:
            item.cancelled = True

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- worker thread -------------------------------------------------------------------------------------

    @staticmethod
    def _fail(owners, exc: BaseException) -> None:
        for owner in owners:
            if not owner.cancelled:
                owner.cancelled = True  # its other rows stop too
                owner.loop.call_soon_threadsafe(owner.out.put_nowait, exc)

    def _run(self) -> None:
        rows: list[_Row] = []
        state: BatchState | None = None
        while not self._stopping.is_set():
            try:
                new = self._take(rows, state)
                if new:
                    rows, state = self._admit_apart(rows, state, new)
                if state is None:
                    continue
                rows, state = self._step(rows, state)
            except Exception as exc:  # a failed step fails the rows it ran, never the server
                log.exception("generation step failed")
                self._fail({row.owner for row in rows}, exc)
                rows, state = [], None
        stopped = EngineError("the engine is shutting down")
        waiting = self._waiting + [self._inbox.get_nowait() for _ in range(self._inbox.qsize())]
        self._fail([row.owner for row in rows] + waiting, stopped)

    def _admit_apart(self, rows: list[_Row], state: BatchState | None, new: list[_Request]
                     ) -> tuple[list[_Row], BatchState | None]:
        """Admit ``new``; when their joint prefill fails, admit them one by one and fail only those that fail."""
        try:
            return self._admit(rows, state, new)
        except Exception as exc:
            if len(new) == 1:
                log.warning("prefill failed for one request: %s", exc)
                self._fail(new, exc)
                return rows, state
        for item in new:
            rows, state = self._admit_apart(rows, state, [item])
        return rows, state

    def _take(self, rows: list[_Row], state: BatchState | None) -> list[_Request]:
        """Waiting requests that fit the batch now; blocks briefly when nothing runs."""
        try:
            while True:
                self._waiting.append(self._inbox.get(timeout=0.05) if not rows and not self._waiting
                                     else self._inbox.get_nowait())
        except queue.Empty:
            pass
        if state is not None and not can_join(state.cache):
            return []  # this model's cache cannot take rows mid-batch: new requests wait for the next batch
        free = self.max_batch_size - len(rows)
        adapter = rows[0].owner.request.adapter if rows else None
        taken: list[_Request] = []
        for item in list(self._waiting):
            if item.cancelled:
                self._waiting.remove(item)
                continue
            if not self.mixed_adapters and (rows or taken):
                first = adapter if rows else taken[0].request.adapter
                if item.request.adapter != first:
                    continue
            if item.request.params.n > free and (rows or taken):
                break
            free -= item.request.params.n
            taken.append(item)
            self._waiting.remove(item)
        return taken

    def _sequence_text(self, request: GenerationRequest) -> SequenceText:
        return SequenceText(IncrementalDecoder(self.tokenizer, self.special, request.keep_token_ids),
                            StopStringFilter(request.params.stop), self.stop_ids, request.params.max_tokens)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor, cache,
                 adapters: list[str] | None, **extra):
        """Logits of each row's last token and the cache; ``adapters`` names each row's (None: the active one)."""
        kwargs = {"adapter_names": adapters, **extra} if self.adapters and adapters is not None else extra
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                             use_cache=True, logits_to_keep=1, **kwargs)
        return out.logits[:, -1, :].float(), out.past_key_values

    def _adapter_names(self, rows: list[_Row]) -> list[str]:
        return [row.owner.request.adapter or BASE for row in rows]

    def _admit(self, rows: list[_Row], state: BatchState | None, new: list[_Request]
               ) -> tuple[list[_Row], BatchState]:
        """Prefill ``new`` as a batch of their own, then join them to the running rows (untouched on failure)."""
        if self.adapters and len(new) > 1 and any(item.request.images for item in new):
            for item in new:  # pixel inputs under separate adapters: one request per prefill (_prefill_images)
                rows, state = self._admit(rows, state, [item])
            assert state is not None
            return rows, state
        added = [_Row(item, i, self._sequence_text(item.request)) for item in new for i in range(item.request.params.n)]
        prompts = [row.owner.request.prompt_ids for row in added]
        ids, mask = left_pad(prompts, self.pad_id, self.device)
        padded = len({len(p) for p in prompts}) > 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        pixels, positions, rope_delta = prefill_inputs(self.model, [row.owner.request.images for row in added], ids,
                                                       mask, positions)
        forward_mask = mask if padded else None
        if pixels and self.adapters:
            logits, cache = self._prefill_images(added[0].owner.request.adapter, ids, forward_mask, positions, pixels)
        else:
            logits, cache = self._forward(ids, forward_mask, positions, None, self._adapter_names(added), **pixels)
        fresh = BatchState(cache=cache, mask=mask, lengths=mask.sum(-1),
                           completion=torch.empty((len(added), 0), dtype=torch.long, device=self.device),
                           logits=logits, padded=padded, rope_delta=rope_delta)
        return rows + added, fresh if state is None else state.join(fresh)

    def _prefill_images(self, adapter: str | None, ids: torch.Tensor, mask: torch.Tensor | None,
                        positions: torch.Tensor, pixels: dict):
        """Prefill one request's rows with pixel inputs under its one adapter (see vision.one_adapter)."""
        with one_adapter(self.model, adapter):
            return self._forward(ids, mask, positions, None, None, **pixels)

    def _step(self, rows: list[_Row], state: BatchState) -> tuple[list[_Row], BatchState | None]:
        tokens = self._sample(rows, state)
        state.append(tokens)
        raw = state.logits.log_softmax(-1) if any(r.params.logprobs is not None for r in rows) else None
        # one transfer each instead of a device sync per row
        token_list, length_list = tokens.tolist(), state.lengths.tolist()
        keep = [i for i, row in enumerate(rows)
                if self._emit(row, token_list[i], length_list[i] + 1 >= self.max_model_len, raw, i)]
        if not keep:
            return [], None
        rows = [rows[i] for i in keep]
        if len(keep) < state.size:
            state = state.keep(keep)
        state.logits, state.cache = self._forward(state.completion[:, -1:], state.forward_mask,
                                                  state.next_positions(), state.cache, self._adapter_names(rows))
        state.lengths = state.lengths + 1
        return rows, state

    def _sample(self, rows: list[_Row], state: BatchState) -> torch.Tensor:
        def column(values: list[float], dtype=torch.float32) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=self.device)

        params = [row.params for row in rows]
        scores = state.logits
        if any(p.presence_penalty or p.frequency_penalty for p in params):
            penalty = OpenAIPenaltyLogitsProcessor(column([p.presence_penalty for p in params]),
                                                   column([p.frequency_penalty for p in params]))
            scores = penalty(state.completion, scores)
        greedy = [p.temperature == 0 for p in params]
        if not all(greedy):
            warper = RowwiseSamplingWarper(column([p.temperature for p in params]),
                                           column([p.top_k for p in params], torch.long),
                                           column([p.top_p for p in params]))
            scores = warper(state.completion, scores)
        return sample_rows(scores, greedy, [row.owner.generator for row in rows])

    def _emit(self, row: _Row, token: int, context_full: bool, raw: torch.Tensor | None, i: int) -> bool:
        """Send the row's new text; return whether the row goes on (a failure here fails only its request)."""
        if row.owner.cancelled:
            return False
        try:
            text, finish = row.text.step(token, context_full=context_full)
            logprobs = () if raw is None or row.params.logprobs is None else (self._logprob(raw[i], token, row),)
        except Exception as exc:
            log.exception("decoding a generated token failed")
            self._fail([row.owner], exc)
            return False
        if finish is None and not row.owner.request.stream:
            # no wake-up of the event loop per token when nobody reads the text as it comes
            row.held_text += text
            row.held_logprobs.extend(logprobs)
            return True
        if row.held_text or row.held_logprobs:
            text, logprobs = row.held_text + text, (*row.held_logprobs, *logprobs)
            row.held_text, row.held_logprobs = "", []
        if text or finish or logprobs:
            delta = Delta(row.index, text, finish, row.text.generated, logprobs)
            row.owner.loop.call_soon_threadsafe(row.owner.out.put_nowait, delta)
        return finish is None

    def _logprob(self, raw: torch.Tensor, token: int, row: _Row) -> TokenLogprob:
        top: tuple[tuple[str, float], ...] = ()
        if row.params.logprobs:
            values, ids = raw.topk(row.params.logprobs)
            top = tuple((self._decode(int(t)), float(v)) for v, t in zip(values, ids, strict=True))
        return TokenLogprob(self._decode(token), float(raw[token]), top)

    def _decode(self, token: int) -> str:
        text = self.tokenizer.decode([token])
        return text if isinstance(text, str) else "".join(text)  # one sequence decodes to one str

