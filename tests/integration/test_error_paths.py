"""Every error path and limit of the gateway, through the SDK, against the real gateway and the real Triton.

Each test starts its own gateway process (with the flags it needs) in front of the shared tritonserver.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from reviewsum import (
    NO_RETRIES,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    ReviewInput,
    ReviewSumClient,
    ReviewSumError,
    SummarizeOptions,
    TlsConfig,
    UnauthenticatedError,
    UnavailableError,
)

from tests.component.certs import make_certificates
from tests.integration.services import (
    RunningServices,
    log_tail,
    running_triton,
    start_gateway,
    stop_process,
    wait_serving,
)

pytestmark = pytest.mark.integration
FAULTY_MODEL = Path(__file__).parent / "faulty_model"
LONG_REVIEW = "屏幕很好，电池续航短，物流很快，包装完好，客服态度很好，价格实惠。" * 4


@contextmanager
def gateway(triton_url: str, workdir: Path, *args: str, wait: bool = True) -> Iterator[tuple[str, Path]]:
    process, log_path, address = start_gateway(triton_url, workdir, *args)
    try:
        if wait:
            wait_serving(address, process, log_path)
        yield address, log_path
    finally:
        stop_process(process)


def wait_until_healthy(client: ReviewSumClient, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.health(timeout=2):
                return
        except ReviewSumError:
            pass
        time.sleep(0.2)
    raise AssertionError("gateway did not become healthy")


def test_validation_names_every_bad_field_and_keeps_the_good_ones_unharmed(client: ReviewSumClient) -> None:
    reviews = [ReviewInput("好评"), ReviewInput(" \n"), ReviewInput("x" * 4001), ReviewInput("差评")]
    with pytest.raises(InvalidArgumentError) as info:
        client.summarize(reviews, options=SummarizeOptions(beam_size=9, max_summary_tokens=0, no_repeat_ngram_size=11))
    assert {v.field for v in info.value.field_violations} == {
        "reviews[1].text",
        "reviews[2].text",
        "options.beam_size",
        "options.max_summary_tokens",
        "options.no_repeat_ngram_size",
    }
    assert info.value.reason == "INVALID_REQUEST"
    with pytest.raises(InvalidArgumentError):
        client.summarize(["好"] * 65)
    assert [s.id for s in client.summarize([ReviewInput("好评", id="g")]).summaries] == ["g"]


def test_token_limit_with_the_served_tokenizer(services: RunningServices, tiny_artifacts: Path, tmp_path: Path) -> None:
    args = ("--tokenizer-file", str(tiny_artifacts / "tokenizer.json"), "--max-review-tokens", "40")
    with (
        gateway(services.triton_grpc_url, tmp_path, *args) as (address, _),
        ReviewSumClient(address, retry=NO_RETRIES) as client,
    ):
        assert client.summarize(["好评"]).summaries
        with pytest.raises(InvalidArgumentError) as info:
            client.summarize(["好评", LONG_REVIEW])
        assert [v.field for v in info.value.field_violations] == ["reviews[1].text"]


def test_inflight_limit_rejects_at_once_with_retry_info(services: RunningServices, tmp_path: Path) -> None:
    with (
        gateway(services.triton_grpc_url, tmp_path, "--max-inflight-requests", "1") as (address, _),
        ReviewSumClient(address, retry=NO_RETRIES) as client,
    ):
        slow_done = threading.Event()

        def slow_call() -> None:
            client.summarize([LONG_REVIEW] * 32, options=SummarizeOptions(beam_size=8, max_summary_tokens=128))
            slow_done.set()

        worker = threading.Thread(target=slow_call)
        worker.start()
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError) as info:
            client.summarize(["好评"])
        assert time.monotonic() - started < 1.0  # rejected at once, not queued
        assert info.value.retry_delay is not None and info.value.reason == "OVERLOADED"
        worker.join(60)
        assert slow_done.is_set()


def test_deadline_is_exceeded_and_the_service_stays_healthy(client: ReviewSumClient) -> None:
    with pytest.raises(DeadlineExceededError):
        client.summarize([LONG_REVIEW] * 16, options=SummarizeOptions(beam_size=8, max_summary_tokens=128), timeout=0.1)
    assert client.health()


def test_an_engine_failure_is_internal_with_a_generic_message(tiny_model_repository: Path, tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(tiny_model_repository, repository, symlinks=True)
    shutil.copytree(FAULTY_MODEL, repository / "faulty")
    with (
        running_triton(repository, tmp_path) as (triton, _),
        gateway(triton.grpc_url, tmp_path, "--model-name", "faulty") as (address, log_path),
    ):
        with ReviewSumClient(address, retry=NO_RETRIES) as client, pytest.raises(InternalError) as info:
            client.summarize(["好评"], request_id="req-faulty")
        assert "secret" not in info.value.message
        assert info.value.metadata["request_id"] == "req-faulty"
        time.sleep(0.2)
        log = log_path.read_text()
        assert "req-faulty" in log and "secret internal detail" in log


def test_api_keys_and_rate_limits(services: RunningServices, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alpha\nbeta\n", encoding="utf-8")
    args = ("--require-api-key", "--api-keys-file", str(keys), "--rate-limit-per-key", "0.5", "--rate-limit-burst", "2")
    with gateway(services.triton_grpc_url, tmp_path, *args) as (address, _):
        with ReviewSumClient(address, retry=NO_RETRIES) as anonymous:
            assert anonymous.health()  # health stays open
            with pytest.raises(UnauthenticatedError):
                anonymous.summarize(["好评"])
        with ReviewSumClient(address, api_key="alpha", retry=NO_RETRIES) as alpha:
            alpha.summarize(["好评"])
            alpha.summarize(["好评"])
            with pytest.raises(ResourceExhaustedError) as info:
                alpha.summarize(["好评"])
            assert info.value.reason == "RATE_LIMITED" and info.value.retry_delay is not None
        with ReviewSumClient(address, api_key="beta", retry=NO_RETRIES) as beta:
            assert beta.summarize(["好评"]).summaries


def test_mutual_tls(services: RunningServices, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    args = (
        "--tls-cert-file",
        str(certs.server_cert),
        "--tls-key-file",
        str(certs.server_key),
        "--tls-client-ca-file",
        str(certs.ca),
    )
    with gateway(services.triton_grpc_url, tmp_path, *args, wait=False) as (address, _):
        tls_address = address.replace("127.0.0.1", "localhost")
        trusted = TlsConfig(
            root_certificates=certs.ca, client_certificate=certs.client_cert, client_key=certs.client_key
        )
        with ReviewSumClient(tls_address, tls=trusted, retry=NO_RETRIES) as client:
            wait_until_healthy(client)
            assert client.summarize(["好评"]).summaries
        no_client_cert = TlsConfig(root_certificates=certs.ca)
        with (
            ReviewSumClient(tls_address, tls=no_client_cert, retry=NO_RETRIES) as no_cert,
            pytest.raises(UnavailableError),
        ):
            no_cert.summarize(["好评"], timeout=3)


def test_metrics_are_exported(services: RunningServices, tmp_path: Path) -> None:
    from tests.integration.services import free_ports

    (metrics_port,) = free_ports(1)
    with gateway(services.triton_grpc_url, tmp_path, "--metrics-port", str(metrics_port)) as (address, _):
        with ReviewSumClient(address, retry=NO_RETRIES) as client:
            client.summarize(["好评", "差评"])
            with pytest.raises(InvalidArgumentError):
                client.summarize([""])
        expected = [
            'reviewsum_requests_total{code="OK",method="SummarizeReviews"} 1.0',
            'reviewsum_requests_total{code="INVALID_ARGUMENT",method="SummarizeReviews"} 1.0',
            "reviewsum_reviews_per_request_sum 2.0",
        ]
        # A call is counted just after its status is sent, so the scrape may briefly lag the client.
        deadline = time.monotonic() + 3
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if all(line in text for line in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    for line in expected:
        assert line in text


def test_sigterm_finishes_inflight_calls_refuses_new_ones_and_exits_0(
    services: RunningServices, tmp_path: Path
) -> None:
    process, log_path, address = start_gateway(services.triton_grpc_url, tmp_path, "--shutdown-grace-s", "30")
    try:
        wait_serving(address, process, log_path)
        with ReviewSumClient(address, retry=NO_RETRIES) as client:
            outcome: dict[str, object] = {}

            def inflight() -> None:
                try:
                    outcome["result"] = client.summarize([LONG_REVIEW] * 8, options=SummarizeOptions(beam_size=4))
                except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
                    outcome["error"] = exc

            worker = threading.Thread(target=inflight)
            worker.start()
            time.sleep(0.3)
            process.terminate()
            time.sleep(0.3)
            with pytest.raises(UnavailableError):
                client.summarize(["新的请求"], timeout=3)
            worker.join(60)
            assert "error" not in outcome, outcome.get("error")
            assert len(outcome["result"].summaries) == 8  # type: ignore[attr-defined]
        assert process.wait(30) == 0, log_tail(log_path)
        log_lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        assert log_lines and all("request_id" in line for line in log_lines)
        assert not any("屏幕很好" in line["msg"] for line in log_lines)  # no review text at INFO
    finally:
        stop_process(process)
        subprocess.run(["true"], check=True)


def test_a_full_triton_queue_is_resource_exhausted_not_unavailable(tiny_artifacts: Path, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from reviewsum_build.model_repository import write_repository

    tuning = {"max_queue_size": 1, "max_batch_size": 1}  # one running and one waiting; the rest are rejected
    repository = write_repository(tmp_path / "repository", tiny_artifacts, tuning=tuning)
    heavy = SummarizeOptions(beam_size=8, max_summary_tokens=128, no_repeat_ngram_size=0)
    with (
        running_triton(repository, tmp_path) as (triton, _),
        gateway(triton.grpc_url, tmp_path, "--max-inflight-requests", "256") as (address, _),
        ReviewSumClient(address, retry=NO_RETRIES, timeout=60) as client,
    ):

        def call(i: int) -> str:
            try:
                client.summarize([f"{i}{LONG_REVIEW}"], options=heavy)
            except ResourceExhaustedError as exc:
                return f"exhausted:{exc.reason}:{exc.retry_delay is not None}"
            except ReviewSumError as exc:
                return f"other:{exc.code.name}"
            return "ok"

        with ThreadPoolExecutor(max_workers=24) as pool:
            outcomes = list(pool.map(call, range(24)))
    assert "exhausted:OVERLOADED:True" in outcomes, outcomes
    assert set(outcomes) <= {"ok", "exhausted:OVERLOADED:True"}, outcomes
    assert "ok" in outcomes


def test_past_triton_capacity_calls_and_streams_are_shed_not_timed_out(
    services: RunningServices, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.integration.services import free_ports

    (metrics_port,) = free_ports(1)
    flags = ("--triton-max-inflight", "1", "--triton-max-waiting", "2", "--triton-max-wait-s", "0.3")
    flags += ("--metrics-port", str(metrics_port))
    heavy = SummarizeOptions(beam_size=8, max_summary_tokens=128, no_repeat_ngram_size=0)
    with (
        gateway(services.triton_grpc_url, tmp_path, *flags) as (address, _),
        ReviewSumClient(address, retry=NO_RETRIES, timeout=30) as client,
    ):

        def outcome(call: Callable[[], object]) -> str:
            try:
                call()
            except ResourceExhaustedError as exc:
                return f"exhausted:{exc.reason}:{exc.retry_delay is not None}"
            except ReviewSumError as exc:
                return f"other:{exc.code.name}"
            return "ok"

        def unary(i: int) -> str:
            return outcome(lambda: client.summarize([f"{i}{LONG_REVIEW}"], options=heavy))

        def stream(i: int) -> str:
            return outcome(
                lambda: list(client.stream(f"{i}{LONG_REVIEW}", options=SummarizeOptions(max_summary_tokens=128)))
            )

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            unary_outcomes = pool.map(unary, range(10))
            stream_outcomes = pool.map(stream, range(6))
            outcomes = {"unary": list(unary_outcomes), "stream": list(stream_outcomes)}
        elapsed = time.monotonic() - started
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    shed = "exhausted:OVERLOADED:True"
    for kind, results in outcomes.items():
        assert set(results) <= {"ok", shed}, (kind, results)  # no DEADLINE_EXCEEDED, no UNAVAILABLE
        assert shed in results, (kind, results)
    assert "ok" in outcomes["unary"] + outcomes["stream"]
    assert elapsed < 30, elapsed
    assert 'reviewsum_admission_refused_total{reason="' in metrics
