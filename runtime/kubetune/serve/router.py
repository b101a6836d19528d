"""HTTP only: routes, API-key check, OpenAI-shaped errors, metrics. Semantics live in kubetune.serve.openai."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from kubetune.serve.errors import OpenAIError, bad_request, internal, unauthorized, unknown_model
from kubetune.serve.metrics import Metrics, MetricsMiddleware
from kubetune.serve.openai.chat import ChatService
from kubetune.serve.openai.completions import CompletionService
from kubetune.serve.openai.protocol import ChatCompletionRequest, CompletionRequest

log = logging.getLogger(__name__)


def _param(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _error(exc: OpenAIError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
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


def create_app(chat: ChatService, completions: CompletionService, metrics: Metrics,
               api_key: str | None = None) -> FastAPI:
    """The FastAPI app: /v1/models, /v1/chat/completions, /v1/completions, /health, /metrics."""

    async def check_key(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise unauthorized()

    app = FastAPI(title="kubetune OpenAI-compatible API")
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _install_error_handlers(app)
    auth = [Depends(check_key)]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "kubetune"}

    @app.get("/v1/models", dependencies=auth)
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card(name) for name in chat.models]}

    @app.get("/v1/models/{model:path}", dependencies=auth)
    async def get_model(model: str) -> dict[str, Any]:
        if model not in chat.models:
            raise unknown_model(model, list(chat.models))
        return card(model)

    @app.post("/v1/chat/completions", dependencies=auth, response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any] | StreamingResponse:
        if body.stream:
            return StreamingResponse(chat.stream(body), media_type="text/event-stream")
        return await chat.complete(body)

    @app.post("/v1/completions", dependencies=auth, response_model=None)
    async def text_completions(body: CompletionRequest) -> dict[str, Any] | StreamingResponse:
        if body.stream:
            return StreamingResponse(completions.stream(body), media_type="text/event-stream")
        return await completions.complete(body)

    return app
