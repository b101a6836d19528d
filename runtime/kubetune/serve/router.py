"""HTTP only: routes, the request guard (key, body), OpenAI-shaped errors, metrics, client disconnects.

Semantics live in kubetune.serve.openai.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from kubetune.config.serve_limits import ServerLimits
from kubetune.serve.errors import OpenAIError, bad_request, internal, unknown_model
from kubetune.serve.guard import RequestGuard
from kubetune.serve.metrics import Metrics, MetricsMiddleware
from kubetune.serve.openai.chat import ChatService
from kubetune.serve.openai.completions import CompletionService
from kubetune.serve.openai.protocol import ChatCompletionRequest, CompletionRequest
from kubetune.serve.openai.responses import ChatCompletion, Completion, ModelCard, ModelList

T = TypeVar("T")
log = logging.getLogger(__name__)
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's code); nobody reads it but the metrics


def _param(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _error(exc: OpenAIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 429:
        headers = {"Retry-After": "1"}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _param(tuple(first.get("loc", ())))
        if first.get("type") == "json_invalid":
            return _error(bad_request("the request body is not valid JSON"))
        return _error(bad_request(f"{param or 'body'}: {first.get('msg', 'invalid value')}", param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(OpenAIError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404
                                  else None))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _error(internal("internal server error; see the server log"))


class EventStream(StreamingResponse):
    """Server-sent events that run ``on_close`` however the response ends (done, failed or client gone)."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(events, media_type="text/event-stream")
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


async def until_disconnected(request: Request, work: Awaitable[T], metrics: Metrics) -> T | Response:
    """``work``'s result, or its cancellation when the client goes away first (generation stops with it)."""
    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        metrics.cancelled.inc()
        return Response(status_code=CLIENT_CLOSED)
    return task.result()


def create_app(chat: ChatService, completions: CompletionService, metrics: Metrics,
               api_key: str | None = None, limits: ServerLimits | None = None) -> FastAPI:
    """The FastAPI app: /v1/models, /v1/chat/completions, /v1/completions, /health, /metrics."""
    limits = limits or ServerLimits()
    app = FastAPI(title="kubetune OpenAI-compatible API")
    # The last one added runs first: metrics see every answer, the guard's refusals too.
    app.add_middleware(RequestGuard, api_key=api_key, max_body_bytes=limits.max_body_bytes,
                       read_timeout_seconds=limits.read_timeout_seconds)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    _install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=name) for name in chat.models])

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str) -> ModelCard:
        if model not in chat.models:
            raise unknown_model(model, list(chat.models))
        return ModelCard(id=model)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request
                               ) -> ChatCompletion | Response:
        if body.stream:
            events, ticket = await chat.stream(body)
            return EventStream(events, ticket.close)
        return await until_disconnected(request, chat.complete(body), metrics)

    @app.post("/v1/completions", response_model=None)
    async def text_completions(body: CompletionRequest, request: Request) -> Completion | Response:
        if body.stream:
            events, ticket = await completions.stream(body)
            return EventStream(events, ticket.close)
        return await until_disconnected(request, completions.complete(body), metrics)

    return app
