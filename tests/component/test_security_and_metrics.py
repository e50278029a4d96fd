"""API keys, rate limits, TLS and mutual TLS, and Prometheus metrics, on the real gateway (fake engine)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from reviewsum import (
    NO_RETRIES,
    AsyncReviewSumClient,
    InvalidArgumentError,
    ResourceExhaustedError,
    TlsConfig,
    UnauthenticatedError,
    UnavailableError,
)
from reviewsum_server.app import create_server
from reviewsum_server.auth import TokenBucket

from tests.component.certs import make_certificates
from tests.component.conftest import open_and_close_a_slow_stream, with_limits
from tests.component.fake_engine import FakeEngine


async def test_api_keys_are_required_when_turned_on_and_health_stays_open(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nkey-one\nkey-two  # the load tester\n", encoding="utf-8")
    gateway = await create_server(with_limits(require_api_key=True, api_keys_file=str(keys)), FakeEngine())
    address = f"127.0.0.1:{gateway.port}"
    try:
        async with AsyncReviewSumClient(address, retry=NO_RETRIES) as anonymous:
            with pytest.raises(UnauthenticatedError) as info:
                await anonymous.summarize(["好"])
            assert info.value.reason == "API_KEY_INVALID"
            await asyncio.sleep(0.1)
            assert await anonymous.health() is True
        async with AsyncReviewSumClient(address, api_key="wrong", retry=NO_RETRIES) as wrong:
            with pytest.raises(UnauthenticatedError):
                await wrong.summarize(["好"])
        async with AsyncReviewSumClient(address, api_key="key-two", retry=NO_RETRIES) as allowed:
            assert (await allowed.summarize(["好"])).summaries[0].summary == "摘要:好"
    finally:
        await gateway.stop(0)


async def test_each_key_is_rate_limited_with_retry_info() -> None:
    config = with_limits(require_api_key=True, api_keys="a,b", rate_limit_per_key=1.0, rate_limit_burst=2)
    gateway = await create_server(config, FakeEngine())
    address = f"127.0.0.1:{gateway.port}"
    try:
        async with (
            AsyncReviewSumClient(address, api_key="a", retry=NO_RETRIES) as a,
            AsyncReviewSumClient(address, api_key="b", retry=NO_RETRIES) as b,
        ):
            await a.summarize(["好"])
            await a.summarize(["好"])
            with pytest.raises(ResourceExhaustedError) as info:
                await a.summarize(["好"])
            assert info.value.reason == "RATE_LIMITED"
            assert info.value.retry_delay is not None and 0.5 < info.value.retry_delay <= 1.0
            assert (await b.summarize(["好"])).summaries  # the other key has its own bucket
    finally:
        await gateway.stop(0)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=1, updated=100.0)
    assert bucket.take(now=100.0) == 0.0
    assert bucket.take(now=100.0) == pytest.approx(0.5)
    assert bucket.take(now=100.5) == 0.0


async def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    config = with_limits(
        tls_cert_file=str(certs.server_cert),
        tls_key_file=str(certs.server_key),
        tls_client_ca_file=str(certs.ca),
    )
    gateway = await create_server(config, FakeEngine())
    address = f"localhost:{gateway.port}"
    try:
        trusted = TlsConfig(
            root_certificates=certs.ca, client_certificate=certs.client_cert, client_key=certs.client_key
        )
        async with AsyncReviewSumClient(address, tls=trusted, retry=NO_RETRIES) as client:
            assert (await client.summarize(["好"])).summaries[0].summary == "摘要:好"
        no_client_cert = TlsConfig(root_certificates=certs.ca)
        async with AsyncReviewSumClient(address, tls=no_client_cert, retry=NO_RETRIES, timeout=3) as client:
            with pytest.raises(UnavailableError):
                await client.summarize(["好"])
        untrusted_server = TlsConfig(
            root_certificates=certs.other_ca, client_certificate=certs.client_cert, client_key=certs.client_key
        )
        async with AsyncReviewSumClient(address, tls=untrusted_server, retry=NO_RETRIES, timeout=3) as client:
            with pytest.raises(UnavailableError):
                await client.summarize(["好"])
        async with AsyncReviewSumClient(address, retry=NO_RETRIES, timeout=3) as plaintext:
            with pytest.raises(UnavailableError):
                await plaintext.summarize(["好"])
    finally:
        await gateway.stop(0)


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_metrics_count_calls_by_method_and_code(gateway, client: AsyncReviewSumClient) -> None:  # type: ignore[no-untyped-def]
    await client.summarize(["好", "差"])
    with pytest.raises(InvalidArgumentError):
        await client.summarize([" "])
    await asyncio.sleep(0.05)  # a call is counted just after its status is sent
    values = await asyncio.to_thread(scrape, gateway.metrics.port)
    assert values['reviewsum_requests_total{code="OK",method="SummarizeReviews"}'] == 1
    assert values['reviewsum_requests_total{code="INVALID_ARGUMENT",method="SummarizeReviews"}'] == 1
    assert values['reviewsum_request_latency_seconds_count{method="SummarizeReviews"}'] == 2
    assert values["reviewsum_reviews_per_request_sum"] == 2
    assert values["reviewsum_summary_tokens_count"] == 2
    assert values["reviewsum_inflight_requests"] == 0


async def test_each_call_is_traced_with_its_method_code_and_request_id() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    gateway = await create_server(with_limits(), FakeEngine(), tracer_provider=provider)
    try:
        async with AsyncReviewSumClient(f"127.0.0.1:{gateway.port}", retry=NO_RETRIES) as client:
            await client.summarize(["好"], request_id="trace-me")
            with pytest.raises(InvalidArgumentError):
                await client.summarize([" "])
        await asyncio.sleep(0.05)
    finally:
        await gateway.stop(0)
    spans = [s for s in exporter.get_finished_spans() if s.name.endswith("SummarizeReviews")]
    assert [s.attributes["rpc.grpc.status_code"] for s in spans] == [0, 3]
    assert spans[0].attributes["reviewsum.request_id"] == "trace-me"


async def test_metrics_count_finished_and_cancelled_streams(  # type: ignore[no-untyped-def]
    gateway, client: AsyncReviewSumClient, engine: FakeEngine
) -> None:
    _ = [e async for e in client.stream("屏幕很好")]
    await open_and_close_a_slow_stream(client, engine)
    values = await asyncio.to_thread(scrape, gateway.metrics.port)
    assert values['reviewsum_requests_total{code="OK",method="StreamSummarizeReview"}'] == 1
    assert values['reviewsum_requests_total{code="CANCELLED",method="StreamSummarizeReview"}'] == 1
    assert values["reviewsum_inflight_requests"] == 0
