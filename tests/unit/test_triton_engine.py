"""How the gateway reads Triton's answers and errors (no server: the parts that need none)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from reviewsum_server.domain import (
    DeadlineExceeded,
    EngineFailure,
    EngineUnavailable,
    GenerationParams,
    Overloaded,
    RequestCancelled,
)
from reviewsum_server.triton_engine import (
    OUTPUT_NAMES,
    TritonEngine,
    build_request,
    bytes_element,
    first_failure,
    parse_response,
    parse_stream_result,
    status_code_of,
    translate_triton_error,
)
from tritonclient.grpc import InferInput, InferRequestedOutput, service_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import InferenceServerException


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.UNAVAILABLE", EngineUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
        ("StatusCode.CANCELLED", RequestCancelled),
        ("StatusCode.INVALID_ARGUMENT", EngineFailure),
        (None, EngineFailure),
    ],
)
def test_triton_status_codes_map_by_code_not_by_message(status: str | None, expected: type) -> None:
    error = translate_triton_error(InferenceServerException("Deadline Exceeded", status=status))
    assert type(error) is expected


def test_status_code_text_is_parsed() -> None:
    assert status_code_of(InferenceServerException("x", status="StatusCode.UNAVAILABLE")) == grpc.StatusCode.UNAVAILABLE


def test_a_failed_group_is_represented_by_its_domain_error() -> None:
    unavailable = EngineUnavailable("down")
    group = ExceptionGroup("x", [ValueError("noise"), ExceptionGroup("y", [unavailable])])
    assert first_failure(group) is unavailable


class FakeResult:
    def __init__(self, **outputs: object) -> None:
        self._outputs = {k: np.array([[v]], dtype=np.object_) for k, v in outputs.items()}

    def as_numpy(self, name: str) -> np.ndarray | None:
        return self._outputs.get(name)


def test_stream_responses_are_pieces_until_the_one_with_a_finish_reason() -> None:
    piece = parse_stream_result(
        FakeResult(TEXT_DELTA="电池".encode(), FINISH_REASON=b"", INPUT_TOKENS=0, OUTPUT_TOKENS=0)
    )
    assert piece.text_delta == "电池" and piece.final is None
    last = parse_stream_result(FakeResult(TEXT_DELTA=b"", FINISH_REASON=b"eos", INPUT_TOKENS=12, OUTPUT_TOKENS=7))
    assert last.final is not None
    assert (last.final.finish_reason, last.final.input_tokens, last.final.summary_tokens) == ("stop", 12, 7)


@pytest.mark.parametrize(("ready", "expected"), [(True, Overloaded), (False, EngineUnavailable)])
async def test_unavailable_with_a_ready_model_means_a_full_queue(ready: bool, expected: type) -> None:
    engine = TritonEngine("127.0.0.1:1", "summarizer")

    async def is_ready() -> bool:
        return ready

    engine.is_ready = is_ready  # type: ignore[method-assign]
    try:
        assert type(await engine._explain(EngineUnavailable("503"))) is expected
        assert type(await engine._explain(DeadlineExceeded("late"))) is DeadlineExceeded
    finally:
        await engine.close()


def tritonclient_request(text: str, params: GenerationParams, request_id: str) -> service_pb2.ModelInferRequest:
    """The request tritonclient itself builds for the same review: the reference for the hand-built one."""
    inputs = []
    for name, datatype, value in (
        ("TEXT", "BYTES", np.array([[text.encode("utf-8")]], dtype=np.object_)),
        ("MAX_NEW_TOKENS", "INT32", np.array([[params.max_summary_tokens]], dtype=np.int32)),
        ("NUM_BEAMS", "INT32", np.array([[params.beam_size]], dtype=np.int32)),
        ("LENGTH_PENALTY", "FP32", np.array([[params.length_penalty]], dtype=np.float32)),
        ("NO_REPEAT_NGRAM_SIZE", "INT32", np.array([[params.no_repeat_ngram_size]], dtype=np.int32)),
    ):
        tensor = InferInput(name, [1, 1], datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return _get_inference_request(
        model_name="summarizer",
        inputs=inputs,
        model_version="1",
        request_id=request_id,
        outputs=[InferRequestedOutput(name) for name in OUTPUT_NAMES],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("性能出色，但电池续航时间较短。", GenerationParams()),
        (
            "Runs large.",
            GenerationParams(beam_size=4, max_summary_tokens=17, length_penalty=0.5, no_repeat_ngram_size=0),
        ),
        ("", GenerationParams(length_penalty=2.75)),
    ],
)
def test_hand_built_request_carries_what_tritonclient_would_send(text: str, params: GenerationParams) -> None:
    ours = build_request("summarizer", "1", text, params, "req-7/3")
    theirs = tritonclient_request(text, params, "req-7/3")
    assert ours.model_name == theirs.model_name and ours.model_version == theirs.model_version
    assert ours.id == "req-7/3"
    assert [(i.name, i.datatype, list(i.shape)) for i in ours.inputs] == [
        (i.name, i.datatype, list(i.shape)) for i in theirs.inputs
    ]
    assert list(ours.raw_input_contents) == list(theirs.raw_input_contents)
    assert [o.name for o in ours.outputs] == list(OUTPUT_NAMES)


def test_requests_built_from_one_template_do_not_share_text() -> None:
    first = build_request("summarizer", "", "屏幕好", GenerationParams(), "a")
    second = build_request("summarizer", "", "电池差", GenerationParams(), "b")
    assert first.raw_input_contents[0] == bytes_element("屏幕好".encode())
    assert second.raw_input_contents[0] == bytes_element("电池差".encode())
    assert (first.id, second.id) == ("a", "b")


def summarizer_response(outputs: dict[str, bytes]) -> service_pb2.ModelInferResponse:
    response = service_pb2.ModelInferResponse(model_name="summarizer")
    for name, raw in outputs.items():
        response.outputs.add(name=name, shape=[1, 1])
        response.raw_output_contents.append(raw)
    return response


def test_raw_response_is_read_by_output_name_not_position() -> None:
    response = summarizer_response(
        {
            "OUTPUT_TOKENS": np.array([7], dtype="<i4").tobytes(),
            "FINISH_REASON": bytes_element(b"length"),
            "SUMMARY": bytes_element("性能出色，但续航较短。".encode()),
            "INPUT_TOKENS": np.array([23], dtype="<i4").tobytes(),
        }
    )
    result = parse_response(response)
    assert (result.summary, result.input_tokens, result.summary_tokens) == ("性能出色，但续航较短。", 23, 7)
    assert result.finish_reason == "length"


def test_a_response_without_an_output_is_an_engine_failure() -> None:
    response = summarizer_response({"SUMMARY": bytes_element(b"ok")})
    with pytest.raises(EngineFailure, match="lacks output"):
        parse_response(response)
