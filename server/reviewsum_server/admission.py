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
  refusal instead of a DEADLINE_EXCEEDED after waiting out their deadline;
- at capacity, a request whose kind (unary review or stream) has lately held its slot longer than
  the caller has left is refused at once, and one that waits may wait only for the time the recent
  ones leave over. Below capacity nothing is refused for its deadline: a call whose deadline is
  shorter than its work gets DEADLINE_EXCEEDED, which is the truth, not RESOURCE_EXHAUSTED. While
  none of that kind is in flight, one is always let through, so the estimate recovers when the load
  drops. (It guards against admitting work that cannot finish in time; in the saturation drill of
  docs/reliability.md every admitted stream finished in time and it refused nothing.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import Overloaded

RETRY_AFTER_S = 0.5
HOLD_TIME_WEIGHT = 0.2  # weight of the newest hold time in the moving average


class HoldTime:
    """Moving average of how long one kind of request held its slot, and how many hold one now."""

    def __init__(self) -> None:
        self.average_s: float | None = None
        self.in_flight = 0

    def record(self, seconds: float) -> None:
        if self.average_s is None:
            self.average_s = seconds
        else:
            self.average_s += HOLD_TIME_WEIGHT * (seconds - self.average_s)

    def expected_s(self) -> float | None:
        """The recent hold time; None while nothing of this kind is in flight (the next one is a probe)."""
        return self.average_s if self.in_flight > 0 else None


@dataclass
class AdmissionStats:
    in_flight: int
    waiting: int
    refused_line_full: int
    refused_wait_budget: int
    refused_too_slow: int


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
        self._refused_too_slow = 0
        self._hold_times: dict[str, HoldTime] = {}

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Admission:
        return cls(config.triton_max_inflight, config.triton_max_waiting, config.triton_max_wait_s)

    def stats(self) -> AdmissionStats:
        return AdmissionStats(
            self._in_flight, self._waiting, self._refused_line_full, self._refused_wait_budget, self._refused_too_slow
        )

    def hold_time(self, kind: str) -> HoldTime:
        hold = self._hold_times.get(kind)
        if hold is None:  # not setdefault: that would build a HoldTime on every call
            hold = self._hold_times[kind] = HoldTime()
        return hold

    def wait_budget(self, remaining_s: float | None, expected_hold_s: float | None = None) -> float:
        if remaining_s is None:
            return self.max_wait_s
        budget = min(self.max_wait_s, remaining_s / 2)
        if expected_hold_s is not None:
            budget = min(budget, remaining_s - expected_hold_s)
        return max(0.0, budget)

    @asynccontextmanager
    async def slot(self, remaining_s: float | None, kind: str = "unary") -> AsyncIterator[None]:
        """Hold one Triton slot for the body; raise `Overloaded` when none frees up in time."""
        hold = self.hold_time(kind)
        expected = hold.expected_s()
        if self._slots.locked():  # only at capacity: with a slot free, a short deadline is the caller's to spend
            self._refuse_if_too_slow(kind, remaining_s, expected)
        await self._acquire(remaining_s, expected)
        self._in_flight += 1
        hold.in_flight += 1
        started = time.monotonic()
        try:
            yield
        finally:
            hold.record(time.monotonic() - started)
            hold.in_flight -= 1
            self._in_flight -= 1
            self._slots.release()

    def _refuse_if_too_slow(self, kind: str, remaining_s: float | None, expected_s: float | None) -> None:
        if remaining_s is None or expected_s is None or expected_s <= remaining_s:
            return
        self._refused_too_slow += 1
        raise Overloaded(
            f"the model is overloaded: a {kind} request lately takes {expected_s:.1f} s, "
            f"more than the {remaining_s:.1f} s left to this call; retry later",
            retry_after_s=RETRY_AFTER_S,
        )

    async def _acquire(self, remaining_s: float | None, expected_hold_s: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: no suspension, no waiting line
            return
        if self._waiting >= self.max_waiting:
            self._refused_line_full += 1
            raise Overloaded(
                f"the model is at capacity ({self.capacity} in flight, {self._waiting} waiting); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        budget = self.wait_budget(remaining_s, expected_hold_s)
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
