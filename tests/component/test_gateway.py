"""The real aio gateway on a free port, driven through the SDK, against a fake engine."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from reviewsum import (
    NO_RETRIES,
    AsyncReviewSumClient,
    DeadlineExceededError,
    FinishReason,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    ReviewInput,
    ReviewSumClient,
    SummarizeOptions,
    UnavailableError,
)
from reviewsum_server.app import create_server
from reviewsum_server.domain import EngineUnavailable, GenerationParams

from tests.component.conftest import with_limits
from tests.component.fake_engine import FakeEngine


async def test_summaries_come_back_in_request_order_with_ids(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    reviews = [ReviewInput("屏幕很好", id="a"), ReviewInput("电池不行", id="b"), ReviewInput("Great fit", id="c")]
    result = await client.summarize(reviews, request_id="req-1")
    assert [s.id for s in result.summaries] == ["a", "b", "c"]
    assert [s.summary for s in result.summaries] == ["摘要:屏幕很好", "摘要:电池不行", "摘要:Great fit"]
    assert result.summaries[0].input_tokens == 5
    assert result.summaries[0].finish_reason is FinishReason.STOP
    assert result.request_id == "req-1"
    assert result.model == "fake/7"
    assert engine.calls[0][3] == "req-1"


async def test_gateway_makes_a_request_id_when_none_is_sent(client: AsyncReviewSumClient) -> None:
    result = await client.summarize(["好"])
    assert len(result.request_id) == 32


async def test_options_reach_the_engine_and_defaults_fill_the_rest(
    client: AsyncReviewSumClient, engine: FakeEngine
) -> None:
    result = await client.summarize(["abcdef"], options=SummarizeOptions(beam_size=4, max_summary_tokens=3))
    params = engine.calls[0][1]
    assert params == GenerationParams(beam_size=4, max_summary_tokens=3, length_penalty=1.0, no_repeat_ngram_size=3)
    assert result.summaries[0].finish_reason is FinishReason.LENGTH


async def test_every_bad_field_is_reported_and_nothing_reaches_the_engine(
    client: AsyncReviewSumClient, engine: FakeEngine
) -> None:
    reviews = [ReviewInput("fine"), ReviewInput("   "), ReviewInput("x" * 51), ReviewInput("")]
    with pytest.raises(InvalidArgumentError) as info:
        await client.summarize(reviews, options=SummarizeOptions(beam_size=0, length_penalty=9.0))
    fields = {v.field for v in info.value.field_violations}
    assert fields == {
        "reviews[1].text",
        "reviews[2].text",
        "reviews[3].text",
        "options.beam_size",
        "options.length_penalty",
    }
    assert info.value.reason == "INVALID_REQUEST"
    assert engine.calls == []


@pytest.mark.parametrize("count", [0, 5])
async def test_review_count_is_bounded(client: AsyncReviewSumClient, count: int) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await client.summarize(["好"] * count)
    assert [v.field for v in info.value.field_violations] == ["reviews"]


async def test_engine_unavailable_maps_to_unavailable(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    engine.error = EngineUnavailable("Triton: connection refused")
    with pytest.raises(UnavailableError) as info:
        await client.summarize(["好"])
    assert info.value.reason == "ENGINE_UNAVAILABLE"
    assert info.value.metadata["request_id"]


async def test_unexpected_errors_become_internal_with_a_generic_message(
    client: AsyncReviewSumClient, engine: FakeEngine
) -> None:
    engine.error = RuntimeError("secret stack detail")
    with pytest.raises(InternalError) as info:
        await client.summarize(["好"])
    assert "secret" not in info.value.message
    assert info.value.reason == "ENGINE_FAILURE"


async def test_callers_deadline_is_passed_to_the_engine(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    await client.summarize(["好"], timeout=2.0)
    timeout_s = engine.calls[0][2]
    # Not the 30 s default: the caller's 2 s, which the grpc-timeout header may round up by a few ms.
    assert timeout_s is not None and 1.0 < timeout_s < 2.05


async def test_deadline_exceeded_cancels_the_engine_call(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    engine.delay_s = 5.0
    with pytest.raises(DeadlineExceededError):
        await client.summarize(["好"], timeout=0.3)
    await asyncio.sleep(0.2)
    assert engine.cancelled == 1


async def test_inflight_limit_rejects_at_once_with_retry_info(engine: FakeEngine) -> None:
    engine.delay_s = 0.5
    gateway = await create_server(with_limits(max_inflight_requests=1), engine)
    try:
        async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
            slow = asyncio.create_task(client.summarize(["好"]))
            await asyncio.sleep(0.1)
            with pytest.raises(ResourceExhaustedError) as info:
                await client.summarize(["好"])
            assert info.value.retry_delay == pytest.approx(0.5)
            assert len((await slow).summaries) == 1
    finally:
        await gateway.stop(0)


async def test_health_follows_engine_readiness(client: AsyncReviewSumClient, engine: FakeEngine) -> None:
    await asyncio.sleep(0.15)
    assert await client.health() is True
    engine.ready = False
    await asyncio.sleep(0.15)
    assert await client.health() is False
    engine.ready = True
    await asyncio.sleep(0.15)
    assert await client.health() is True


async def test_health_starts_not_serving_until_the_model_is_ready() -> None:
    engine = FakeEngine(ready=False)
    gateway = await create_server(with_limits(), engine)
    try:
        async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
            assert await client.health() is False
            with pytest.raises(UnavailableError):
                await client.model_info()
    finally:
        await gateway.stop(0)


async def test_model_info_reports_model_and_limits(client: AsyncReviewSumClient) -> None:
    info = await client.model_info()
    assert (info.model_name, info.model_version, info.engine) == ("fake", "7", "fake-engine")
    assert info.max_reviews_per_request == 4 and info.max_review_chars == 50 and info.max_input_tokens == 99
    assert info.languages == ["zh", "en"]


async def test_reflection_lists_the_services(gateway) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
    assert {"reviewsum.v1.ReviewSummarizer", "grpc.health.v1.Health"} <= names


async def test_graceful_stop_lets_inflight_calls_finish_and_reports_not_serving(engine: FakeEngine) -> None:
    engine.delay_s = 0.4
    gateway = await create_server(with_limits(), engine)
    async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
        inflight = asyncio.create_task(client.summarize(["好"]))
        await asyncio.sleep(0.1)
        await gateway.stop(2.0)
        assert len((await inflight).summaries) == 1
    assert engine.closed


async def test_sync_client_works_against_the_same_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    def call() -> list[str]:
        with ReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
            return [s.summary for s in client.summarize(["好评", "差评"]).summaries]

    assert await asyncio.to_thread(call) == ["摘要:好评", "摘要:差评"]


async def test_token_limit_uses_the_models_tokenizer(tmp_path, engine: FakeEngine) -> None:  # type: ignore[no-untyped-def]
    from reviewsum_build.tokenizer import save_tokenizer, train_tokenizer

    tokenizer = train_tokenizer(["电池续航短", "屏幕很好"] * 20, vocab_size=300)
    path = save_tokenizer(tokenizer, tmp_path)
    gateway = await create_server(with_limits(tokenizer_file=str(path), max_review_tokens=6), engine)
    try:
        async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
            assert len((await client.summarize(["屏幕很好"])).summaries) == 1
            with pytest.raises(InvalidArgumentError) as info:
                await client.summarize(["屏幕很好", "𝔘𝔫𝔨𝔫𝔬𝔴𝔫 text"])  # rare characters cost one token per byte
        (violation,) = info.value.field_violations
        assert violation.field == "reviews[1].text" and "tokens; the limit is 6" in violation.description
    finally:
        await gateway.stop(0)
