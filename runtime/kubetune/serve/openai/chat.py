"""POST /v1/chat/completions: messages -> prompt -> engine -> message or chunk stream, tool calls included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from kubetune.data.media import count_placeholders
from kubetune.model.chatformat import ChatFormatError, render_prompt, tool_format_of
from kubetune.serve.engine import Delta, GenerationRequest, TokenLogprob
from kubetune.serve.errors import OpenAIError, bad_request
from kubetune.serve.images import load_images
from kubetune.serve.openai.admission import Ticket
from kubetune.serve.openai.media import image_prompt, media_plugin, message_text
from kubetune.serve.openai.params import sampling_params
from kubetune.serve.openai.protocol import ChatCompletionRequest, ChatMessage
from kubetune.serve.openai.responses import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    ChunkChoice,
    FunctionCallOut,
    TokenLogprobOut,
    ToolCallDelta,
    ToolCallOut,
    TopLogprob,
    Usage,
)
from kubetune.serve.openai.service import Choice, Service, new_id, now, sse
from kubetune.serve.openai.tools import ToolCallStream, ToolFormat, parse_tool_calls, tool_format_for


def template_messages(messages: list[ChatMessage], urls: list[tuple[str, str]] | None = None
                      ) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates expect them (text parts joined, tool-call arguments as objects).

    Image parts become ``<image>`` placeholders; their ``(url, param)`` pairs are appended to ``urls``.
    """
    out = []
    found: list[tuple[str, str]] = [] if urls is None else urls
    for i, m in enumerate(messages):
        content = message_text(m, i, found)
        item: dict[str, Any] = {"role": {"developer": "system", "function": "tool"}.get(m.role, m.role),
                                "content": content or ""}
        if m.name:
            item["name"] = m.name
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        if m.tool_calls:
            try:
                item["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                    "name": c.function.name, "arguments": json.loads(c.function.arguments or "{}")}}
                    for c in m.tool_calls]
            except json.JSONDecodeError as exc:
                raise bad_request(f"tool call arguments must be JSON: {exc}", param=f"messages[{i}].tool_calls") \
                    from exc
        out.append(item)
    return out


def prompt_chars(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    """Characters the template will see: message contents and tool-call arguments, plus the tool schemas."""
    size = sum(len(m["content"]) + len(json.dumps(m.get("tool_calls", ""))) for m in messages)
    return size + (len(json.dumps(tools)) if tools else 0)


def chat_logprobs(items: list[TokenLogprob]) -> ChatLogprobs:
    return ChatLogprobs(content=[TokenLogprobOut(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()),
                                                 top_logprobs=[TopLogprob.of(tok, lp) for tok, lp in t.top])
                                 for t in items])


class ChatService(Service):
    """The chat completions endpoint's semantics."""

    async def prepare(self, req: ChatCompletionRequest) -> tuple[GenerationRequest, ToolFormat | None, Ticket]:
        """Validate, render and admit the request. Raises OpenAIError (400/404/429) before any generation starts."""
        adapter = self.adapter_for(req.model)
        if req.response_format and req.response_format.get("type", "text") != "text":
            raise bad_request("only response_format type 'text' is supported", param="response_format")
        if req.tool_choice not in (None, "none", "auto"):
            raise bad_request("tool_choice supports 'auto' and 'none'", param="tool_choice")
        tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools and req.tool_choice != "none" \
            else None
        fmt = None
        if tools:
            template_format = tool_format_of(self.config.template) if self.config.template else None
            fmt = tool_format_for(self.config.tool_format, template_format)
        if req.top_logprobs is not None and not req.logprobs:
            raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")
        urls: list[tuple[str, str]] = []
        messages = template_messages(req.messages, urls)
        self.check_prompt_chars(prompt_chars(messages, tools), "messages")
        processor = self._processor_for(urls, messages)
        ticket = self.reserve(req.n)
        try:
            prompt, images = await self.off_loop(self._render_images, messages, tools, urls, processor)
            top = req.top_logprobs if req.logprobs else None
            params = sampling_params(req, self.config, prompt_len=len(prompt),
                                     max_model_len=self.engine.max_model_len,
                                     max_tokens=req.max_completion_tokens or req.max_tokens,
                                     logprobs=(top or 0) if req.logprobs else None)
        except BaseException:
            ticket.close()
            raise
        keep = frozenset(self._marker_ids(fmt)) if fmt else frozenset()
        request = GenerationRequest(prompt, params, adapter, keep, images=images, stream=bool(req.stream))
        return request, fmt, ticket

    def _processor_for(self, urls: list[tuple[str, str]], messages: list[dict[str, Any]]) -> Any:
        """The model's processor when the request holds images (None when it holds none); a 400 when the model
        takes no images or the text holds a literal ``<image>`` besides them."""
        if not urls:
            return None
        processor = getattr(self.engine, "processor", None)
        if processor is None:
            raise bad_request(f"model {self.config.model_name!r} takes no images (it is not a vision-language "
                              "model served by the hf engine); send text content only", param=urls[0][1])
        if count_placeholders(messages) != len(urls):
            raise bad_request("the message text holds a literal <image> besides its image parts; remove it",
                              param="messages")
        return processor

    def _render_images(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                       urls: list[tuple[str, str]], processor: Any) -> tuple[list[int], dict[str, Any] | None]:
        """The prompt's token ids and, for a request with images, the processor's pixel inputs."""
        if not urls:
            return self._render(messages, tools), None
        images = load_images(urls, self.config.limits)
        plugin = media_plugin(self.config.template, processor)
        expanded, pixels = image_prompt(processor, plugin, messages, images, self.config.image_max_pixels,
                                        self.config.image_min_pixels)
        return self._render(expanded, tools), pixels

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        try:
            return render_prompt(self.engine.tokenizer, messages, tools=tools, template=self.config.template,
                                 system=self.config.default_system)
        except ChatFormatError as exc:
            raise bad_request(str(exc), param="messages") from exc

    def _marker_ids(self, fmt: ToolFormat) -> list[int]:
        vocab = self.engine.tokenizer.get_vocab()
        return [vocab[m] for m in (fmt.start, fmt.end) if m and m in vocab]

    async def complete(self, req: ChatCompletionRequest) -> ChatCompletion:
        request, fmt, ticket = await self.prepare(req)
        try:
            choices = await self.collect(request, ticket)
        finally:
            ticket.close()
        return ChatCompletion(
            id=new_id("chatcmpl"), created=now(), model=req.model,
            choices=[self._choice(i, c, fmt, req.logprobs) for i, c in enumerate(choices)],
            usage=Usage.of(len(request.prompt_ids), sum(c.completion_tokens for c in choices)))

    @staticmethod
    def _choice(index: int, choice: Choice, fmt: ToolFormat | None, logprobs: bool) -> ChatChoice:
        message = AssistantMessage(content=choice.text)
        finish = choice.finish_reason
        if fmt is not None:
            content, calls = parse_tool_calls(choice.text, fmt)
            if calls:
                message = AssistantMessage(content=content, tool_calls=[
                    ToolCallOut(id=cid, function=FunctionCallOut(name=name, arguments=args))
                    for cid, name, args in calls])
                finish = "tool_calls"
        return ChatChoice(index=index, message=message, finish_reason=finish,
                          logprobs=chat_logprobs(choice.logprobs) if logprobs else None)

    async def stream(self, req: ChatCompletionRequest) -> tuple[AsyncIterator[str], Ticket]:
        """Server-sent events and their ticket (the caller closes it when the response ends); validation errors
        are raised here, before the first byte is sent."""
        request, fmt, ticket = await self.prepare(req)
        return self._events(req, request, fmt, ticket), ticket

    async def _events(self, req: ChatCompletionRequest, request: GenerationRequest, fmt: ToolFormat | None,
                      ticket: Ticket) -> AsyncIterator[str]:
        cid, created = new_id("chatcmpl"), now()

        def chunk(index: int, delta: ChatDelta, finish: str | None = None, logprobs: ChatLogprobs | None = None
                  ) -> str:
            return sse(ChatCompletionChunk(id=cid, created=created, model=req.model, choices=[
                ChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)]).model_dump_json())

        for i in range(req.n):
            yield chunk(i, ChatDelta(role="assistant", content=""))
        parsers = [ToolCallStream(fmt) if fmt else None for _ in range(req.n)]
        tokens = [0] * req.n
        try:
            async for delta in self.deltas(request, ticket):
                tokens[delta.index] = delta.completion_tokens
                for out in self._stream_delta(delta, parsers[delta.index], req.logprobs):
                    yield chunk(delta.index, *out)
        except OpenAIError as exc:
            yield sse(exc.response().model_dump_json())
        finally:
            ticket.close()
        if req.stream_options and req.stream_options.include_usage:
            yield sse(ChatCompletionChunk(id=cid, created=created, model=req.model, choices=[],
                                          usage=Usage.of(len(request.prompt_ids), sum(tokens))).model_dump_json())
        yield sse("[DONE]")

    @staticmethod
    def _stream_delta(delta: Delta, parser: ToolCallStream | None, logprobs: bool
                      ) -> list[tuple[ChatDelta, str | None, ChatLogprobs | None]]:
        """(delta, finish_reason, logprobs) triples for one engine delta."""
        lp = chat_logprobs(list(delta.logprobs)) if logprobs and delta.logprobs else None
        out: list[tuple[ChatDelta, str | None, ChatLogprobs | None]]
        if parser is None:
            out = [(ChatDelta(content=delta.text or None), None, lp)]
        else:
            events = parser.feed(delta.text) + (parser.finish() if delta.finish_reason else [])
            out = [(ChatDelta(content=v) if k == "content" else ChatDelta(tool_calls=[
                ToolCallDelta(index=v[0], id=v[1], function=FunctionCallOut(name=v[2], arguments=v[3]))]),
                None, None) for k, v in events]
            if lp and out:
                out[0] = (out[0][0], None, lp)
        if delta.finish_reason:
            finish = "tool_calls" if parser is not None and parser.calls else delta.finish_reason
            out.append((ChatDelta(), finish, None))
        return [o for o in out if not o[0].empty() or o[1] or o[2]]
