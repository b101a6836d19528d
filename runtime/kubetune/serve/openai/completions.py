"""POST /v1/completions: raw prompts (text or token ids), no chat template."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from kubetune.serve.engine import GenerationRequest, TokenLogprob
from kubetune.serve.errors import OpenAIError, bad_request
from kubetune.serve.openai.params import sampling_params
from kubetune.serve.openai.protocol import CompletionRequest
from kubetune.serve.openai.service import Choice, Service, new_id, now, sse


def _logprobs(items: list[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets, at = [], offset
    for item in items:
        offsets.append(at)
        at += len(item.token)
    return {"tokens": [t.token for t in items], "token_logprobs": [t.logprob for t in items],
            "top_logprobs": [dict(t.top) for t in items], "text_offset": offsets}


class CompletionService(Service):
    """The legacy completions endpoint's semantics."""

    def prompts(self, req: CompletionRequest) -> list[list[int]]:
        prompt = req.prompt
        if isinstance(prompt, str):
            prompt = [prompt]
        if not prompt:
            raise bad_request("prompt is empty", param="prompt")
        if all(isinstance(p, int) for p in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        tok = self.engine.tokenizer
        return [tok(p, add_special_tokens=True)["input_ids"] if isinstance(p, str) else list(p) for p in prompt]

    def prepare(self, req: CompletionRequest) -> list[GenerationRequest]:
        adapter = self.adapter_for(req.model)
        if req.suffix:
            raise bad_request("suffix is not supported", param="suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise bad_request("best_of must equal n (no server-side ranking)", param="best_of")
        requests = []
        for ids in self.prompts(req):
            params = sampling_params(req, self.config, prompt_len=len(ids), max_model_len=self.engine.max_model_len,
                                     max_tokens=req.max_tokens, logprobs=req.logprobs)
            requests.append(GenerationRequest(ids, params, adapter))
        return requests

    def _echo(self, request: GenerationRequest, echo: bool) -> str:
        return self.engine.tokenizer.decode(request.prompt_ids, skip_special_tokens=True) if echo else ""

    async def complete(self, req: CompletionRequest) -> dict[str, Any]:
        requests = self.prepare(req)
        results: list[list[Choice]] = await asyncio.gather(*(self.collect(r) for r in requests))
        choices = []
        for p, (request, outs) in enumerate(zip(requests, results, strict=True)):
            prefix = self._echo(request, req.echo)
            for j, c in enumerate(outs):
                choices.append({"index": p * req.n + j, "text": prefix + c.text, "finish_reason": c.finish_reason,
                                "logprobs": _logprobs(c.logprobs, len(prefix)) if req.logprobs is not None else None})
        prompt_tokens = sum(len(r.prompt_ids) for r in requests)
        completion = sum(c.completion_tokens for outs in results for c in outs)
        return {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": req.model,
                "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                              "total_tokens": prompt_tokens + completion}}

    def stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        return self._events(req, self.prepare(req))

    async def _events(self, req: CompletionRequest, requests: list[GenerationRequest]) -> AsyncIterator[str]:
        cid, created = new_id("cmpl"), now()
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(p: int, request: GenerationRequest) -> None:
            try:
                if req.echo:
                    await queue.put((p * req.n, self._echo(request, True), None, None))
                async for d in self.deltas(request):
                    lp = _logprobs(list(d.logprobs), 0) if req.logprobs is not None and d.logprobs else None
                    await queue.put((p * req.n + d.index, d.text, d.finish_reason, lp))
            except OpenAIError as exc:
                await queue.put(exc)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(pump(p, r)) for p, r in enumerate(requests)]
        running = len(tasks)
        try:
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, OpenAIError):
                    yield sse(json.dumps(item.body()))
                else:
                    index, text, finish, lp = item
                    yield sse(json.dumps({"id": cid, "object": "text_completion", "created": created,
                                          "model": req.model, "choices": [{"index": index, "text": text,
                                                                           "logprobs": lp, "finish_reason": finish}]}))
        finally:
            for task in tasks:
                task.cancel()
        yield sse("[DONE]")
