from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from reviewsum import NO_RETRIES, AsyncReviewSumClient
from reviewsum_server.app import Gateway, create_server
from reviewsum_server.config import GatewayConfig

from tests.component.fake_engine import FakeEngine

TEST_CONFIG = GatewayConfig(
    host="127.0.0.1",
    port=0,
    max_reviews_per_request=4,
    max_review_chars=50,
    readiness_poll_s=0.05,
    metrics_port=0,
)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def config() -> GatewayConfig:
    return TEST_CONFIG


@pytest.fixture
async def gateway(engine: FakeEngine, config: GatewayConfig) -> AsyncIterator[Gateway]:
    gw = await create_server(config, engine)
    yield gw
    await gw.stop(0)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncReviewSumClient]:
    async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", timeout=5.0, retry=NO_RETRIES) as c:
        yield c


def with_limits(**changes: object) -> GatewayConfig:
    return replace(TEST_CONFIG, **changes)  # type: ignore[arg-type]


async def open_and_close_a_slow_stream(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    """Start a stream the fake engine generates slowly, take one message, close it, let the gateway react."""
    engine.delay_s = 0.05
    events = client.stream("一二三四五六七八九十" * 3)
    async for _event in events:
        break
    await events.aclose()
    await asyncio.sleep(0.3)
