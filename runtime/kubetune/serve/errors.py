"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status."""

from __future__ import annotations

from typing import Any

from kubetune.serve.openai.responses import ErrorDetail, ErrorResponse


class OpenAIError(Exception):
    """An error the client sees; ``param`` names the request field at fault."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorDetail(message=self.message, type=self.type, param=self.param,
                                               code=self.code))

    def body(self) -> dict[str, Any]:
        return self.response().model_dump()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def unknown_model(name: str, known: list[str]) -> OpenAIError:
    return OpenAIError(404, f"The model {name!r} does not exist; this server serves {', '.join(known)}",
                       param="model", code="model_not_found")


def unauthorized() -> OpenAIError:
    return OpenAIError(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'",
                       code="invalid_api_key")


def internal(message: str = "The engine failed while generating; see the server log") -> OpenAIError:
    return OpenAIError(500, message, type="server_error", code="internal_error")


def too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than this server's limit of {limit} bytes "
                       "(limits.max_body_bytes)", code="request_too_large")


def request_timeout(seconds: float) -> OpenAIError:
    return OpenAIError(408, f"The request body did not arrive in time (no data for {seconds:g}s; "
                       "limits.read_timeout_seconds)", code="request_timeout")


def busy(queued: int, limit: int) -> OpenAIError:
    """Too many sequences already accepted: the client should retry later (the response carries Retry-After)."""
    return OpenAIError(429, f"The server is busy: {queued} sequences are generating or waiting and this request "
                       f"would pass the limit of {limit} (limits.max_queued_sequences); retry later",
                       type="requests", code="rate_limit_exceeded")


def unavailable(message: str = "The server is shutting down; retry on another replica") -> OpenAIError:
    return OpenAIError(503, message, type="server_error", code="service_unavailable")
