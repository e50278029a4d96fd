"""The real tritonserver and the real gateway on free ports, with the tiny model, driven through the SDK."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from reviewsum import (
    NO_RETRIES,
    DeadlineExceededError,
    FinishReason,
    ReviewInput,
    ReviewSumClient,
    SummarizeOptions,
    UnavailableError,
)
from reviewsum_engine import GenerationOptions, OnnxSummarizer
from tritonclient.utils import InferenceServerException

from tests.integration.services import RunningServices, running_services, stop_process

pytestmark = pytest.mark.integration

REVIEWS = [
    "性能出色，通话顺畅，但电池续航时间较短。",
    "The delivery was fast and the food was still hot, but the portion was small.",
    "房间干净，服务员态度很好，就是隔音不太好。",
    "屏幕效果非常棒，性价比高，但品控有待提升。",
    "Battery life is excellent, the screen is bright.",
    "送餐太慢了，等了一个多小时，饭菜都凉了。",
    "轻薄便携，但性能稍弱，续航能力一般。",
    "Too expensive for what you get.",
]


def test_health_is_serving_and_info_names_the_model(client: ReviewSumClient) -> None:
    assert client.health() is True
    info = client.model_info()
    assert (info.model_name, info.model_version) == ("summarizer", "1")
    assert info.engine == "triton-python-onnxruntime"
    assert info.max_reviews_per_request == 64


def test_summaries_match_the_onnx_engine_for_chinese_and_english(
    client: ReviewSumClient, engine: OnnxSummarizer
) -> None:
    result = client.summarize([ReviewInput(text, id=f"r{i}") for i, text in enumerate(REVIEWS)])
    expected = engine.summarize(REVIEWS, [GenerationOptions()] * len(REVIEWS))
    assert [s.id for s in result.summaries] == [f"r{i}" for i in range(len(REVIEWS))]
    assert [s.summary for s in result.summaries] == [g.text for g in expected]
    assert [s.summary_tokens for s in result.summaries] == [g.output_tokens for g in expected]
    assert [s.input_tokens for s in result.summaries] == [g.input_tokens for g in expected]
    assert all(s.summary for s in result.summaries)
    assert result.model == "summarizer/1"


def test_options_change_the_generation(client: ReviewSumClient, engine: OnnxSummarizer) -> None:
    options = SummarizeOptions(beam_size=3, max_summary_tokens=5, no_repeat_ngram_size=2)
    result = client.summarize(REVIEWS[:2], options=options)
    expected = engine.summarize(
        REVIEWS[:2], [GenerationOptions(max_new_tokens=5, num_beams=3, no_repeat_ngram_size=2)] * 2
    )
    assert [s.summary for s in result.summaries] == [g.text for g in expected]
    assert all(s.summary_tokens <= 5 for s in result.summaries)
    assert {s.finish_reason for s in result.summaries} <= {FinishReason.STOP, FinishReason.LENGTH}


def batch_sizes_executed(triton_url: str) -> dict[int, int]:
    client = triton_grpc.InferenceServerClient(triton_url)
    stats = client.get_inference_statistics("summarizer", as_json=True)
    return {
        int(b["batch_size"]): int(b["compute_infer"].get("count", 0))
        for b in stats["model_stats"][0].get("batch_stats", [])
    }


def test_concurrent_requests_share_a_dynamic_batch_and_match_one_by_one(
    client: ReviewSumClient, services: RunningServices
) -> None:
    one_by_one = [client.summarize([text]).summaries[0].summary for text in REVIEWS]
    before = batch_sizes_executed(services.triton_grpc_url)
    slow = SummarizeOptions(beam_size=8, max_summary_tokens=128, no_repeat_ngram_size=0)
    with ThreadPoolExecutor(max_workers=len(REVIEWS) + 1) as pool:
        # A slow request keeps the model instance busy, so the others queue up and leave in one batch
        # however slowly a loaded machine sends them.
        blocker = pool.submit(client.summarize, [REVIEWS[0] * 4], options=slow)
        concurrent = list(pool.map(lambda text: client.summarize([text]).summaries[0].summary, REVIEWS))
        blocker.result()
    assert concurrent == one_by_one
    deadline = time.monotonic() + 10  # Triton records a batch just after answering it
    while True:
        after = batch_sizes_executed(services.triton_grpc_url)
        grown = {size for size, count in after.items() if count > before.get(size, 0)}
        if max(grown, default=0) > 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert max(grown, default=0) > 1, f"no batch larger than 1 executed: {after}"


def test_a_bad_request_gets_its_own_error_and_its_batch_mates_succeed(services: RunningServices) -> None:
    def infer(num_beams: int) -> str:
        client = triton_grpc.InferenceServerClient(services.triton_grpc_url)
        text = triton_grpc.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([["好评".encode()]], dtype=np.object_))
        beams = triton_grpc.InferInput("NUM_BEAMS", [1, 1], "INT32")
        beams.set_data_from_numpy(np.array([[num_beams]], dtype=np.int32))
        try:
            result = client.infer("summarizer", [text, beams])
        except InferenceServerException as exc:
            return f"error: {exc.message()}"
        return "ok" if result.as_numpy("SUMMARY") is not None else "missing"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(infer, [1, 0, 1, 1, -3, 1]))
    assert [o == "ok" for o in outcomes] == [True, False, True, True, False, True]
    assert all("NUM_BEAMS" in o or "beam" in o.lower() for o in (outcomes[1], outcomes[4]))


def test_deadline_shorter_than_the_work_is_deadline_exceeded(client: ReviewSumClient) -> None:
    with pytest.raises(DeadlineExceededError):
        client.summarize(REVIEWS * 8, options=SummarizeOptions(beam_size=8, max_summary_tokens=128), timeout=0.05)
    assert client.health() is True  # the service is still fine afterwards


def test_gateway_reports_not_serving_when_triton_dies_and_unavailable_calls_fail_fast(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    with (
        running_services(tiny_model_repository, tmp_path) as services,
        ReviewSumClient(services.gateway_address, timeout=10.0, retry=NO_RETRIES) as client,
    ):
        assert client.summarize(["好评"]).summaries[0].summary
        assert services.triton.process is not None
        os.kill(services.triton.process.pid, signal.SIGKILL)
        services.triton.process.wait()
        deadline = time.monotonic() + 10
        while client.health() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.health() is False
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.summarize(["好评"])
        assert time.monotonic() - started < 5.0
        assert stop_process(services.gateway) == 0  # SIGTERM: graceful, exit 0
