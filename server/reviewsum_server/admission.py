"""Admission to Triton: the gateway's load shedder.

Triton's own queue limit (`default_queue_policy { max_queue_size }`) caused ~0.5 s stalls at low
load in this Triton build (docs/benchmarks.md), so the model configs leave Triton's queue unbounded
and the gateway bounds what it sends instead:

- at most `capacity` Triton requests in flight across all calls (a couple of batches' worth, so the
  dynamic batcher always has the next batch ready);
- beyond that, up to `max_waiting` requests wait here, first come first served;
- a request that cannot get in within its wait budget (`max_wait_s`, and never more than half of the
  caller's remaining deadline, so there is still time to generate) is refused with RESOURCE_EXHAUSTED,
  as is one that arrives when the waiting line is full. Past capacity, callers get a fast, retryable
  refusal instead of a DEADLINE_EXCEEDED after waiting out their deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import Overloaded

RETRY_AFTER_S = 0.5


@dataclass
class AdmissionStats:
    in_flight: int
    waiting: int
    refused_line_full: int
    refused_wait_budget: int


class Admission:
    def __init__(self, capacity: int, max_waiting: int, max_wait_s: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(capacity)
        self._in_flight = 0
        self._waiting = 0
        self._refused_line_full = 0
        self._refused_wait_budget = 0

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Admission:
        return cls(config.triton_max_inflight, config.triton_max_waiting, config.triton_max_wait_s)

    def stats(self) -> AdmissionStats:
        return AdmissionStats(self._in_flight, self._waiting, self._refused_line_full, self._refused_wait_budget)

    def wait_budget(self, remaining_s: float | None) -> float:
        if remaining_s is None:
            return self.max_wait_s
        return max(0.0, min(self.max_wait_s, remaining_s / 2))

    @asynccontextmanager
    async def slot(self, remaining_s: float | None) -> AsyncIterator[None]:
        """Hold one Triton slot for the body; raise `Overloaded` when none frees up in time."""
        await self._acquire(remaining_s)
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def _acquire(self, remaining_s: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: no suspension, no waiting line
            return
        if self._waiting >= self.max_waiting:
            self._refused_line_full += 1
            raise Overloaded(
                f"the model is at capacity ({self.capacity} in flight, {self._waiting} waiting); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        budget = self.wait_budget(remaining_s)
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=budget)
        except TimeoutError:
            self._refused_wait_budget += 1
            raise Overloaded(
                f"the model is at capacity: no slot freed up within {budget:.2f} s; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            ) from None
        finally:
            self._waiting -= 1
