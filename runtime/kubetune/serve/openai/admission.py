"""Admission: how many sequences the server accepts, and a fair share of the engine between requests.

Each HTTP request first reserves all its sequences (prompts x n): past ``max_queued_sequences`` accepted
sequences it is refused with a 429 instead of waiting without bound. Its generation requests then take engine
slots (as many as the engine batches) one at a time; a free slot goes to the waiting request that holds the
fewest slots and was served least recently, so a request of 16 prompts x 16 cannot make a small request that
arrives after it wait for all of its 256 sequences: the small one takes the next free slot.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from kubetune.serve.errors import bad_request, busy
from kubetune.serve.metrics import Metrics

_order = itertools.count()


@dataclass(eq=False)
class Ticket:
    """One HTTP request's reservation; ``close`` returns it (idempotent)."""

    admission: Admission
    sequences: int
    held: int = 0
    last_served: int = -1
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.admission.reserved -= self.sequences


@dataclass(eq=False)
class _Waiter:
    ticket: Ticket
    n: int
    future: asyncio.Future
    arrival: int = field(default_factory=lambda: next(_order))


@dataclass
class Admission:
    """``slots`` sequences generate at once (the engine's batch); at most ``max_queued`` are accepted."""

    slots: int
    max_queued: int
    max_per_request: int
    metrics: Metrics | None = None
    reserved: int = 0
    running: int = 0
    _waiters: list[_Waiter] = field(default_factory=list)
    _served: itertools.count = field(default_factory=itertools.count)

    def reserve(self, sequences: int, param: str = "n") -> Ticket:
        """Accept a request of ``sequences`` sequences, or raise 400 (too many for one request) / 429 (busy)."""
        if sequences > self.max_per_request:
            self._reject("too_many_sequences")
            raise bad_request(f"this request asks for {sequences} sequences (prompts x n); at most "
                              f"{self.max_per_request} per request (limits.max_sequences_per_request)", param=param)
        if self.reserved + sequences > self.max_queued:
            self._reject("busy")
            raise busy(self.reserved, self.max_queued)
        self.reserved += sequences
        return Ticket(self, sequences)

    @asynccontextmanager
    async def slots_for(self, ticket: Ticket, n: int) -> AsyncIterator[None]:
        """Hold slots for ``n`` sequences of ``ticket`` while the body runs (waiting fairly for them)."""
        need = min(n, self.slots)
        waiter = _Waiter(ticket, need, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._dispatch()
        try:
            await waiter.future
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                self._give_back(waiter)
            self._report()
            raise
        try:
            yield
        finally:
            self._give_back(waiter)

    def _give_back(self, waiter: _Waiter) -> None:
        self.running -= waiter.n
        waiter.ticket.held -= waiter.n
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiters:
            nxt = min(self._waiters, key=lambda w: (w.ticket.held, w.ticket.last_served, w.arrival))
            if self.running + nxt.n > self.slots:
                break
            self._waiters.remove(nxt)
            self.running += nxt.n
            nxt.ticket.held += nxt.n
            nxt.ticket.last_served = next(self._served)
            nxt.future.set_result(None)
        self._report()

    def _report(self) -> None:
        if self.metrics:
            self.metrics.sequences_running.set(self.running)
            self.metrics.sequences_waiting.set(sum(w.n for w in self._waiters))

    def _reject(self, reason: str) -> None:
        if self.metrics:
            self.metrics.rejected.labels(reason).inc()
