"""Proto <-> dataclass conversion on both sides of the wire, and the error details round trip."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status
from reviewsum import FinishReason, InvalidArgumentError, Language, ResourceExhaustedError, SummarizeOptions, _convert
from reviewsum.errors import InternalError, from_rpc_error
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import EngineFailure, GenerationParams, InvalidRequest, Overloaded, Violation
from reviewsum_server.rpc_errors import rich_status
from reviewsum_server.validation import validate_summarize_request


def test_unset_sdk_options_stay_unset_on_the_wire() -> None:
    message = _convert.options_to_pb(SummarizeOptions(beam_size=2, language_hint=Language.EN))
    assert message.HasField("beam_size") and message.beam_size == 2
    assert not message.HasField("max_summary_tokens") and not message.HasField("length_penalty")
    assert message.language_hint == pb.LANGUAGE_EN


def test_explicit_zero_is_sent_and_not_confused_with_unset() -> None:
    message = _convert.options_to_pb(SummarizeOptions(no_repeat_ngram_size=0))
    assert message.HasField("no_repeat_ngram_size") and message.no_repeat_ngram_size == 0
    params = validate_summarize_request(
        pb.SummarizeReviewsRequest(reviews=[pb.Review(text="好")], options=message), GatewayConfig()
    )
    assert params.no_repeat_ngram_size == 0


def test_gateway_defaults_fill_unset_options() -> None:
    params = validate_summarize_request(pb.SummarizeReviewsRequest(reviews=[pb.Review(text="好")]), GatewayConfig())
    assert params == GenerationParams(beam_size=1, max_summary_tokens=48, length_penalty=1.0, no_repeat_ngram_size=3)


def test_summary_messages_become_typed_results() -> None:
    response = pb.SummarizeReviewsResponse(
        summaries=[
            pb.ReviewSummary(
                id="a", summary="好", input_tokens=5, summary_tokens=2, finish_reason=pb.FINISH_REASON_STOP
            ),
            pb.ReviewSummary(id="b", summary="差", finish_reason=pb.FINISH_REASON_LENGTH),
        ],
        request_id="r",
        model="summarizer/1",
    )
    result = _convert.summarize_result_from_pb(response)
    assert [(s.id, s.summary, s.finish_reason) for s in result.summaries] == [
        ("a", "好", FinishReason.STOP),
        ("b", "差", FinishReason.LENGTH),
    ]
    assert result.summaries[0].input_tokens == 5 and result.model == "summarizer/1"


class FakeRpcError(grpc.RpcError):
    """What a failed call looks like to the SDK: code, details and trailing metadata."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._status.trailing_metadata


def round_trip(error: Exception) -> Exception:
    status = rpc_status.to_status(rich_status(error, "req-9"))  # type: ignore[arg-type]
    return from_rpc_error(FakeRpcError(status))


def test_field_violations_and_reason_survive_the_wire() -> None:
    error = round_trip(InvalidRequest([Violation("reviews[3].text", "must not be empty")]))
    assert isinstance(error, InvalidArgumentError)
    assert [(v.field, v.description) for v in error.field_violations] == [("reviews[3].text", "must not be empty")]
    assert error.reason == "INVALID_REQUEST" and error.metadata["request_id"] == "req-9"


def test_retry_info_survives_the_wire() -> None:
    error = round_trip(Overloaded("busy", retry_after_s=1.5))
    assert isinstance(error, ResourceExhaustedError)
    assert error.retry_delay == pytest.approx(1.5)


def test_internal_errors_hide_their_detail() -> None:
    error = round_trip(EngineFailure("Triton error INTERNAL: numpy stack trace"))
    assert isinstance(error, InternalError)
    assert "numpy" not in error.message
