"""POST /v1/completions: raw prompts (text or token ids), no chat template."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from kubetune.serve.engine import GenerationRequest, TokenLogprob
from kubetune.serve.errors import OpenAIError, bad_request
from kubetune.serve.openai.admission import Ticket
from kubetune.serve.openai.params import sampling_params
from kubetune.serve.openai.protocol import CompletionRequest
from kubetune.serve.openai.responses import Completion, CompletionChoice, CompletionLogprobs, Usage
from kubetune.serve.openai.service import Choice, Service, new_id, now, sse


def _logprobs(items: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    offsets, at = [], offset
    for item in items:
        offsets.append(at)
        at += len(item.token)
    return CompletionLogprobs(tokens=[t.token for t in items], token_logprobs=[t.logprob for t in items],
                              top_logprobs=[dict(t.top) for t in items], text_offset=offsets)


def _param(req: CompletionRequest, index: int) -> str:
    """How errors name prompt ``index``: ``prompt`` for a lone text prompt, else ``prompt[i]``."""
    return "prompt" if isinstance(req.prompt, str) else f"prompt[{index}]"


class CompletionService(Service):
    """The legacy completions endpoint's semantics."""

    def _token_prompt(self, ids: list[int], param: str) -> list[int]:
        """A prompt given as token ids, checked: not empty, every id inside the vocabulary."""
        if not ids:
            raise bad_request(f"{param} is empty: give at least one token id", param=param)
        vocab = self.engine.vocab_size
        bad = next((i for i in ids if not 0 <= i < vocab), None)
        if bad is not None:
            raise bad_request(f"{param}: token id {bad} is outside this model's vocabulary (0 to {vocab - 1})",
                              param=param)
        return ids

    def prompts(self, req: CompletionRequest) -> list[str | list[int]]:
        """The request's prompts, checked for shape, token ids and size; text prompts are not tokenized yet."""
        prompt = req.prompt
        if isinstance(prompt, str):
            prompt = [prompt]
        if not prompt:
            raise bad_request("prompt is empty", param="prompt")
        if all(isinstance(p, int) for p in prompt):
            return [self._token_prompt(list(prompt), "prompt")]  # type: ignore[arg-type]
        out: list[str | list[int]] = []
        for i, p in enumerate(prompt):
            if isinstance(p, str):
                self.check_prompt_chars(len(p), _param(req, i))
                out.append(p)
            else:
                out.append(self._token_prompt(list(cast("list[int]", p)), _param(req, i)))
        return out

    def _tokenize(self, prompts: list[str | list[int]]) -> list[list[int]]:
        tok = self.engine.tokenizer
        return [tok(p, add_special_tokens=True)["input_ids"] if isinstance(p, str) else p for p in prompts]

    async def prepare(self, req: CompletionRequest) -> tuple[list[GenerationRequest], Ticket]:
        """Validated generation requests and their admission ticket; raises OpenAIError (400/404/429) first."""
        adapter = self.adapter_for(req.model)
        if req.suffix:
            raise bad_request("suffix is not supported", param="suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise bad_request("best_of must equal n (no server-side ranking)", param="best_of")
        prompts = self.prompts(req)
        ticket = self.reserve(len(prompts) * req.n, param="prompt" if len(prompts) > 1 else "n")
        try:
            requests = []
            for i, ids in enumerate(await self.off_loop(self._tokenize, prompts)):
                if not ids:
                    raise bad_request(f"{_param(req, i)} is empty: give some text or token ids",
                                      param=_param(req, i))
                params = sampling_params(req, self.config, prompt_len=len(ids),
                                         max_model_len=self.engine.max_model_len, max_tokens=req.max_tokens,
                                         logprobs=req.logprobs, prompt_param="prompt")
                requests.append(GenerationRequest(ids, params, adapter, stream=bool(req.stream)))
        except BaseException:
            ticket.close()
            raise
        return requests, ticket

    def _echo(self, request: GenerationRequest, echo: bool) -> str:
        # decode is typed str | list[str] (a batch decodes to a list); one sequence decodes to one str
        return str(self.engine.tokenizer.decode(request.prompt_ids, skip_special_tokens=True)) if echo else ""

    async def complete(self, req: CompletionRequest) -> Completion:
        requests, ticket = await self.prepare(req)
        try:
            results: list[list[Choice]] = await asyncio.gather(*(self.collect(r, ticket) for r in requests))
        finally:
            ticket.close()
        choices = []
        for p, (request, outs) in enumerate(zip(requests, results, strict=True)):
            prefix = self._echo(request, req.echo)
            for j, c in enumerate(outs):
                choices.append(CompletionChoice(
                    index=p * req.n + j, text=prefix + c.text, finish_reason=c.finish_reason,
                    logprobs=_logprobs(c.logprobs, len(prefix)) if req.logprobs is not None else None))
        prompt_tokens = sum(len(r.prompt_ids) for r in requests)
        completion = sum(c.completion_tokens for outs in results for c in outs)
        return Completion(id=new_id("cmpl"), created=now(), model=req.model, choices=choices,
                          usage=Usage.of(prompt_tokens, completion))

    async def stream(self, req: CompletionRequest) -> tuple[AsyncIterator[str], Ticket]:
        """Server-sent events and their ticket (the caller closes it when the response ends)."""
        requests, ticket = await self.prepare(req)
        return self._events(req, requests, ticket), ticket

    async def _events(self, req: CompletionRequest, requests: list[GenerationRequest], ticket: Ticket
                      ) -> AsyncIterator[str]:
        cid, created = new_id("cmpl"), now()
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(p: int, request: GenerationRequest) -> None:
            try:
                if req.echo:
                    await queue.put((p * req.n, self._echo(request, True), None, None))
                async for d in self.deltas(request, ticket):
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
                    yield sse(item.response().model_dump_json())
                else:
                    index, text, finish, lp = item
                    choice = CompletionChoice(index=index, text=text, logprobs=lp, finish_reason=finish)
                    yield sse(Completion(id=cid, created=created, model=req.model, choices=[choice]).model_dump_json())
        finally:
            for task in tasks:
                task.cancel()
            ticket.close()
        yield sse("[DONE]")
