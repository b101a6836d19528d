"""The first thing a request meets: the API key from the headers, then a bounded, timed read of the body.

FastAPI reads and parses the whole body before any dependency runs, so a key check there comes after a
client has made the server hold any number of bytes. This middleware checks the key before reading anything,
refuses a declared ``Content-Length`` over the cap at once, and reads the body itself, chunk by chunk, stopping
as soon as it passes the cap (so at most ``max_body_bytes`` are ever held). The body is then replayed to the
app; later ``receive()`` calls go to the server, so handlers still learn of a client that disconnects.
"""

from __future__ import annotations

import asyncio
import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubetune.serve.errors import OpenAIError, bad_request, request_timeout, too_large, unauthorized


def authorized(headers: list[tuple[bytes, bytes]], api_key: str) -> bool:
    """Whether ``headers`` carry ``Authorization: Bearer <api_key>`` (compared in constant time)."""
    value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
    scheme, _, token = value.decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    value = next((v for k, v in headers if k.lower() == b"content-length"), None)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request("Content-Length is not a number") from None


async def send_error(send: Send, exc: OpenAIError) -> None:
    headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(exc.body()).encode()})


class RequestGuard:
    """Key check on ``/v1/`` paths before the body, then the body read under ``max_body_bytes`` and a timeout."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, read_timeout_seconds: float):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            if self.api_key is not None and scope["path"].startswith("/v1/") \
                    and not authorized(scope["headers"], self.api_key):
                raise unauthorized()
            length = declared_length(scope["headers"])
            if length is not None and length > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            body = await self._read_body(receive)
        except OpenAIError as exc:
            await send_error(send, exc)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout)
            except TimeoutError:
                raise request_timeout(self.read_timeout) from None
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields ``body`` once, then waits on the server (for ``http.disconnect``)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
