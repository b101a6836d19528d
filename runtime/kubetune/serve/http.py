"""The HTTP server under the app: uvicorn with a connection cap, a header timeout and a bounded shutdown.

uvicorn times out idle keep-alive connections, but not a connection that never sends (or only trickles) its
request headers, and it accepts connections without bound: 400 silent sockets hold the server for minutes.
:class:`GuardedH11Protocol` closes a connection that has not sent complete headers within the read timeout
(measured from when the server starts waiting for a request, so trickling bytes does not extend it) and closes
connections past the cap as they are accepted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from kubetune.config.serve_limits import ServerLimits

log = logging.getLogger(__name__)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and a cap on open connections."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since: object = None  # the cycle that was current when the deadline was armed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("closing a connection: %d open, limits.max_connections is %d", len(self.connections),
                        self.limits.max_connections)
            self.transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._waiting_since:
            self._disarm()  # a new request's headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined request already started: its headers are in
        self._waiting_since = self.cycle
        self._deadline = self.loop.call_later(self.limits.read_timeout_seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.cycle is self._waiting_since and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, host: str, port: int, limits: ServerLimits, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings for ``app`` under ``limits``."""
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        http=functools.partial(GuardedH11Protocol, limits=limits),  # type: ignore[arg-type]
        timeout_keep_alive=limits.keep_alive_seconds,  # type: ignore[arg-type]  # typed int, used as a float
        timeout_graceful_shutdown=limits.shutdown_seconds,  # type: ignore[arg-type]
    )
