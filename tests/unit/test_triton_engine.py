"""How the gateway reads Triton's answers and errors (no server: the parts that need none)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from reviewsum_server.domain import (
    DeadlineExceeded,
    EngineFailure,
    EngineUnavailable,
    Overloaded,
    RequestCancelled,
)
from reviewsum_server.triton_engine import (
    TritonEngine,
    first_failure,
    parse_stream_result,
    status_code_of,
    translate_triton_error,
)
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
