"""Prometheus metrics of one server: requests, latency, tokens. A registry per app, so tests can run several.

Requests are labelled by route template (``/v1/models/{model:path}``), never by the raw path: a label per path
lets any client grow /metrics without bound by asking for random URLs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("kubetune_requests", "HTTP requests answered", ["path", "status"], registry=r)
        self.latency = Histogram("kubetune_request_duration_seconds", "Time until the last byte of the response",
                                 ["path"], registry=r,
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.in_flight = Gauge("kubetune_requests_in_flight", "Requests being answered", registry=r)
        self.prompt_tokens = Counter("kubetune_prompt_tokens", "Prompt tokens processed", ["model"], registry=r)
        self.generated_tokens = Counter("kubetune_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.sequences_running = Gauge("kubetune_sequences_running", "Sequences handed to the engine", registry=r)
        self.sequences_waiting = Gauge("kubetune_sequences_waiting", "Sequences accepted, waiting for the engine",
                                       registry=r)
        self.rejected = Counter("kubetune_requests_rejected", "Requests refused by a limit", ["reason"], registry=r)
        self.cancelled = Counter("kubetune_requests_cancelled", "Requests whose client went away before the end",
                                 registry=r)


def route_label(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that serves ``scope``, or "unmatched" (a bounded set of labels)."""
    partial = UNMATCHED  # the path matched with another method (a 405)
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match is Match.PARTIAL and partial == UNMATCHED:
            partial = str(getattr(route, "path", UNMATCHED))
    return partial


class MetricsMiddleware:
    """Count requests and time them until the response body is complete (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        self.metrics.in_flight.inc()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.in_flight.dec()
            path = route_label(self.routes, scope)
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
