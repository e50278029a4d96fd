"""The real tritonserver serving the decoupled `summarizer_stream` model (tiny model), streamed over gRPC.

Each streamed summary is checked against the non-streaming `summarizer` model of the same server: the deltas
concatenate to its greedy SUMMARY, and the final response carries its FINISH_REASON and token counts.
"""

from __future__ import annotations

import asyncio
import queue
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_aio
from reviewsum_engine import GenerationOptions, OnnxSummarizer
from tritonclient.utils import InferenceServerException

from tests.integration.services import running_triton

pytestmark = pytest.mark.integration

STREAM_MODEL = "summarizer_stream"
CASES = [
    ("这家店的外卖送得很快，味道也不错，下次还会再点。", GenerationOptions(max_new_tokens=24)),
    ("The room was clean but the street outside was noisy at night.", GenerationOptions(no_repeat_ngram_size=0)),
    ("质量不错", GenerationOptions(max_new_tokens=20, no_repeat_ngram_size=1)),
    ("Great value 😀 for the price, I will order again.", GenerationOptions(max_new_tokens=30)),
    ("包装很好，菜品新鲜，分量足。The delivery was fast!", GenerationOptions(max_new_tokens=8)),
]
# With the tiny model this text, without n-gram blocking, runs to the decoder's length limit.
LONG_TEXT = "The room was clean but the street outside was noisy at night."


@dataclass
class Streamed:
    deltas: list[str]
    finish_reason: str
    input_tokens: int
    output_tokens: int

    @property
    def summary(self) -> tuple[str, str, int, int]:
        return "".join(self.deltas), self.finish_reason, self.input_tokens, self.output_tokens


@pytest.fixture(scope="module")
def triton(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Requests wait up to 300 ms for batch mates here, so the batching assertion holds on a loaded machine."""
    from reviewsum_build.model_repository import write_repository

    workdir = tmp_path_factory.mktemp("triton-stream")
    repository = write_repository(
        workdir / "repository", tiny_artifacts, tuning={"max_queue_delay_microseconds": 300_000}
    )
    with running_triton(repository, workdir) as (server, log_path):
        yield server.grpc_url, log_path


@pytest.fixture(scope="module")
def triton_url(triton: tuple[str, Path]) -> str:
    return triton[0]


def stream_inputs(text: str, options: GenerationOptions | None) -> list[triton_grpc.InferInput]:
    tensor = triton_grpc.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text.encode("utf-8")]], dtype=np.object_))
    inputs = [tensor]
    if options is not None:
        for name, value in (
            ("MAX_NEW_TOKENS", options.max_new_tokens),
            ("NO_REPEAT_NGRAM_SIZE", options.no_repeat_ngram_size),
        ):
            tensor = triton_grpc.InferInput(name, [1, 1], "INT32")
            tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
            inputs.append(tensor)
    return inputs


def is_final(result: triton_grpc.InferResult) -> bool:
    return result.get_response().parameters["triton_final_response"].bool_param


def collect(results: list[triton_grpc.InferResult]) -> Streamed:
    """Check one request's framing (only the last response is final; the others carry a non-empty delta, no
    finish reason and zero counts) and collect its text and final fields."""
    assert [is_final(r) for r in results] == [False] * (len(results) - 1) + [True]
    rows = [
        (
            r.as_numpy("TEXT_DELTA")[0, 0].decode("utf-8"),
            r.as_numpy("FINISH_REASON")[0, 0].decode("utf-8"),
            int(r.as_numpy("INPUT_TOKENS")[0, 0]),
            int(r.as_numpy("OUTPUT_TOKENS")[0, 0]),
        )
        for r in results
    ]
    assert all(delta and (reason, inputs, outputs) == ("", 0, 0) for delta, reason, inputs, outputs in rows[:-1])
    _, reason, inputs, outputs = rows[-1]
    return Streamed([row[0] for row in rows], reason, inputs, outputs)


def non_streaming(url: str, text: str, options: GenerationOptions) -> tuple[str, str, int, int]:
    """The `summarizer` model's greedy answer for the same text and options."""
    inputs = stream_inputs(text, options)  # same names and shapes; NUM_BEAMS left at its default of 1
    with triton_grpc.InferenceServerClient(url) as client:
        result = client.infer("summarizer", inputs, client_timeout=60.0)
    summary, reason = (result.as_numpy(name)[0, 0].decode("utf-8") for name in ("SUMMARY", "FINISH_REASON"))
    return summary, reason, int(result.as_numpy("INPUT_TOKENS")[0, 0]), int(result.as_numpy("OUTPUT_TOKENS")[0, 0])


async def stream_one(client: triton_aio.InferenceServerClient, text: str, options: GenerationOptions) -> Streamed:
    """One request on its own stream (what a gateway handler does); the stream ends after the final response."""

    async def requests() -> AsyncIterator[dict[str, object]]:
        yield {"model_name": STREAM_MODEL, "inputs": stream_inputs(text, options)}

    results = []
    async for result, error in client.stream_infer(requests()):
        if error is not None:
            raise error
        results.append(result)
    return collect(results)


def executions(url: str) -> tuple[int, int]:
    with triton_grpc.InferenceServerClient(url) as client:
        (stats,) = client.get_inference_statistics(STREAM_MODEL, as_json=True)["model_stats"]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


async def test_concurrent_streams_match_the_non_streaming_model(triton_url: str) -> None:
    expected = [non_streaming(triton_url, text, options) for text, options in CASES]
    async with triton_aio.InferenceServerClient(triton_url) as client:
        streams = await asyncio.wait_for(
            asyncio.gather(*(stream_one(client, text, options) for text, options in CASES)), timeout=120
        )
    assert [stream.summary for stream in streams] == expected
    assert {stream.finish_reason for stream in streams} == {"eos", "length"}  # both endings are covered
    assert max(len(stream.deltas) for stream in streams) > 3  # streamed as generated, not once at the end


def test_requests_multiplexed_on_one_stream_are_decoded_together(triton_url: str) -> None:
    expected = {str(i): non_streaming(triton_url, text, options) for i, (text, options) in enumerate(CASES)}
    before = executions(triton_url)
    received: queue.Queue[tuple[triton_grpc.InferResult | None, InferenceServerException | None]] = queue.Queue()
    results: dict[str, list[triton_grpc.InferResult]] = {request_id: [] for request_id in expected}
    with triton_grpc.InferenceServerClient(triton_url) as client:
        client.start_stream(callback=lambda result, error: received.put((result, error)))
        for request_id, (text, options) in zip(expected, CASES, strict=True):
            client.async_stream_infer(STREAM_MODEL, stream_inputs(text, options), request_id=request_id)
        finals = 0
        while finals < len(expected):
            result, error = received.get(timeout=60)
            assert error is None and result is not None
            results[result.get_response().id].append(result)
            finals += is_final(result)
        client.stop_stream()
    assert {request_id: collect(rs).summary for request_id, rs in results.items()} == expected
    # A stream's final response can go out before its batch's execute() returns; Triton records the
    # statistics when the requests are released, so they may lag the client briefly.
    deadline = time.monotonic() + 10
    after = executions(triton_url)
    while after[0] - before[0] < len(CASES) and time.monotonic() < deadline:
        time.sleep(0.1)
        after = executions(triton_url)
    requests, batches = after[0] - before[0], after[1] - before[1]
    assert requests == len(CASES)
    assert batches < requests  # the dynamic batcher put concurrent streams into shared engine calls


def test_a_bad_request_gets_one_error_and_the_stream_goes_on(triton_url: str) -> None:
    good_text, good_options = CASES[2]
    received: queue.Queue[tuple[triton_grpc.InferResult | None, InferenceServerException | None]] = queue.Queue()
    with triton_grpc.InferenceServerClient(triton_url) as client:
        client.start_stream(callback=lambda result, error: received.put((result, error)))
        client.async_stream_infer(STREAM_MODEL, stream_inputs("好评", GenerationOptions(max_new_tokens=0)))
        client.async_stream_infer(STREAM_MODEL, stream_inputs(good_text, good_options), request_id="good")
        errors, results = [], []
        while not (results and is_final(results[-1])):
            result, error = received.get(timeout=60)
            if error is not None:
                errors.append(error)
            else:
                results.append(result)
        # The stream still serves requests after an error response.
        client.async_stream_infer(STREAM_MODEL, stream_inputs(good_text, good_options), request_id="again")
        again = []
        while not (again and is_final(again[-1])):
            result, error = received.get(timeout=60)
            assert error is None
            again.append(result)
        client.stop_stream()
    (error,) = errors
    assert "MAX_NEW_TOKENS" in error.message()
    expected = non_streaming(triton_url, good_text, good_options)
    assert collect(results).summary == collect(again).summary == expected


def test_plain_infer_is_refused(triton_url: str) -> None:
    with triton_grpc.InferenceServerClient(triton_url) as client, pytest.raises(InferenceServerException) as raised:
        client.infer(STREAM_MODEL, stream_inputs("好评", None))
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


async def test_a_stream_cancelled_by_the_client_stops_decoding(triton: tuple[str, Path], tiny_artifacts: Path) -> None:
    url, log_path = triton
    engine = OnnxSummarizer(tiny_artifacts, intra_op_threads=1)
    limit = engine.artifacts.max_new_tokens_limit
    long = GenerationOptions(max_new_tokens=limit, no_repeat_ngram_size=0)
    (full,) = engine.summarize([LONG_TEXT], [long])
    assert (full.finish_reason, full.output_tokens) == ("length", limit)  # uncancelled, it would run to the end
    other_text, other_options = CASES[0]

    async def requests() -> AsyncIterator[dict[str, object]]:
        yield {"model_name": STREAM_MODEL, "inputs": stream_inputs(LONG_TEXT, long), "request_id": "cancel-me"}
        await asyncio.sleep(3600)  # keep the request side open, as a client that is still listening would

    async with triton_aio.InferenceServerClient(url) as client:
        other = asyncio.ensure_future(stream_one(client, other_text, other_options))
        responses = client.stream_infer(requests())
        result, error = await asyncio.wait_for(responses.__anext__(), timeout=60)
        assert error is None and not is_final(result)
        assert responses.cancel()
        with pytest.raises(asyncio.CancelledError):  # how a cancelled stream looks to its own client
            await asyncio.wait_for(responses.__anext__(), timeout=10)
        other_stream = await asyncio.wait_for(other, timeout=60)
    assert other_stream.summary == non_streaming(url, other_text, other_options)

    pattern = re.compile(r"summarizer_stream: request 'cancel-me' cancelled after (\d+) tokens")
    deadline = time.monotonic() + 20
    while not (match := pattern.search(log_path.read_text(errors="replace"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert match, "the model did not report the cancellation"
    assert int(match.group(1)) < limit
