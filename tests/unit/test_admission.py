"""The gateway's admission control in front of Triton: capacity, a bounded waiting line, a wait budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import generate_latest
from reviewsum_server.admission import Admission
from reviewsum_server.domain import Overloaded
from reviewsum_server.metrics import GatewayMetrics


async def hold(
    admission: Admission, release: asyncio.Event, remaining_s: float | None = None, kind: str = "unary"
) -> None:
    async with admission.slot(remaining_s, kind):
        await release.wait()


async def test_requests_within_capacity_get_in_at_once() -> None:
    admission = Admission(capacity=2, max_waiting=0, max_wait_s=1.0)
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(admission, release)) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.stats().in_flight == 2
    release.set()
    await asyncio.gather(*holders)
    assert admission.stats().in_flight == 0


async def test_a_full_waiting_line_refuses_at_once() -> None:
    admission = Admission(capacity=1, max_waiting=1, max_wait_s=5.0)
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    waiting = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0.01)
    assert (admission.stats().in_flight, admission.stats().waiting) == (1, 1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(Overloaded) as refused:
        await hold(admission, release)
    assert asyncio.get_running_loop().time() - started < 0.1
    assert refused.value.retry_after_s > 0
    assert admission.stats().refused_line_full == 1
    release.set()
    await asyncio.gather(running, waiting)  # both admitted ones finish normally


async def test_a_waiter_is_refused_when_its_wait_budget_is_spent() -> None:
    admission = Admission(capacity=1, max_waiting=10, max_wait_s=0.05)
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(Overloaded, match="0.05 s"):
        await hold(admission, release)
    assert 0.04 < asyncio.get_running_loop().time() - started < 0.5
    assert admission.stats().refused_wait_budget == 1 and admission.stats().waiting == 0
    release.set()
    await running


def test_the_wait_budget_leaves_half_the_callers_deadline_for_generation() -> None:
    admission = Admission(capacity=1, max_waiting=10, max_wait_s=3.0)
    assert admission.wait_budget(None) == 3.0
    assert admission.wait_budget(10.0) == 3.0
    assert admission.wait_budget(1.0) == 0.5
    assert admission.wait_budget(-1.0) == 0.0


def test_the_wait_budget_leaves_the_time_recent_requests_took() -> None:
    admission = Admission(capacity=1, max_waiting=10, max_wait_s=3.0)
    assert admission.wait_budget(10.0, expected_hold_s=8.5) == pytest.approx(1.5)
    assert admission.wait_budget(10.0, expected_hold_s=1.0) == 3.0
    assert admission.wait_budget(4.0, expected_hold_s=6.0) == 0.0


async def record_hold(admission: Admission, kind: str, seconds: float) -> None:
    async with admission.slot(None, kind):
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def one_slow_stream_in_flight(capacity: int) -> AsyncIterator[tuple[Admission, asyncio.Event]]:
    """An admission whose streams lately held their slot 0.2 s, with one stream holding a slot now."""
    admission = Admission(capacity=capacity, max_waiting=10, max_wait_s=5.0)
    await record_hold(admission, "stream", 0.2)
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release, kind="stream"))
    await asyncio.sleep(0)
    try:
        yield admission, release
    finally:
        release.set()
        await running


async def test_at_capacity_a_kind_that_lately_outlives_the_deadline_is_refused_at_once() -> None:
    async with one_slow_stream_in_flight(capacity=1) as (admission, release):
        started = asyncio.get_running_loop().time()
        with pytest.raises(Overloaded, match=r"stream request lately takes 0\.2 s, more than the 0\.1 s left"):
            await hold(admission, release, remaining_s=0.1, kind="stream")
        assert asyncio.get_running_loop().time() - started < 0.05
        assert admission.stats().refused_too_slow == 1
        # Other kinds keep their own history: a unary review with the same time left waits its budget instead.
        with pytest.raises(Overloaded, match="no slot freed up"):
            await hold(admission, release, remaining_s=0.1)
        assert admission.stats().refused_wait_budget == 1


async def test_below_capacity_a_short_deadline_is_admitted_and_left_to_expire() -> None:
    async with one_slow_stream_in_flight(capacity=8) as (admission, _release):
        async with admission.slot(0.1, "stream"):
            assert admission.stats().in_flight == 2
        assert admission.stats().refused_too_slow == 0


async def test_with_none_of_a_kind_in_flight_one_is_let_through_to_measure_again() -> None:
    admission = Admission(capacity=8, max_waiting=10, max_wait_s=5.0)
    await record_hold(admission, "stream", 0.2)
    async with admission.slot(0.1, "stream"):  # nothing in flight: a probe, admitted
        assert admission.stats().in_flight == 1
    assert admission.hold_time("stream").average_s is not None
    assert admission.hold_time("stream").average_s < 0.2  # the fast probe pulled the average down
    assert admission.stats().refused_too_slow == 0


async def test_waiters_get_in_first_come_first_served_and_slots_come_back_after_errors() -> None:
    admission = Admission(capacity=1, max_waiting=10, max_wait_s=5.0)
    order: list[int] = []

    async def work(i: int) -> None:
        async with admission.slot(None):
            order.append(i)
            await asyncio.sleep(0.001)
            if i == 0:
                raise RuntimeError("the first request fails")

    results = await asyncio.gather(*(work(i) for i in range(5)), return_exceptions=True)
    assert order == [0, 1, 2, 3, 4]
    assert isinstance(results[0], RuntimeError) and results[1:] == [None] * 4
    assert admission.stats().in_flight == 0
    async with admission.slot(None):  # the failed request's slot was returned
        assert admission.stats().in_flight == 1


async def test_a_cancelled_waiter_leaves_the_line_without_taking_a_slot() -> None:
    admission = Admission(capacity=1, max_waiting=10, max_wait_s=5.0)
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.stats().waiting == 0
    release.set()
    await running
    async with admission.slot(0.1):
        assert admission.stats().in_flight == 1


async def test_admission_state_is_exported_to_prometheus() -> None:
    admission = Admission(capacity=1, max_waiting=0, max_wait_s=1.0)
    metrics = GatewayMetrics.create()
    metrics.watch_admission(admission)
    release = asyncio.Event()
    running = asyncio.create_task(hold(admission, release))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await hold(admission, release)
    text = generate_latest(metrics.registry).decode()
    assert "reviewsum_triton_inflight 1.0" in text
    assert "reviewsum_triton_waiting 0.0" in text
    assert 'reviewsum_admission_refused_total{reason="waiting_line_full"} 1.0' in text
    assert 'reviewsum_admission_refused_total{reason="recent_calls_too_slow"} 0.0' in text
    release.set()
    await running
