"""Conversion between the SDK's dataclasses and reviewsum.v1 messages."""

from __future__ import annotations

from collections.abc import Iterable

from reviewsum.types import (
    FinishReason,
    Language,
    ModelInfo,
    ReviewInput,
    SummarizeOptions,
    SummarizeResult,
    Summary,
)
from reviewsum.v1 import reviewsum_pb2 as pb

_FINISH = {
    pb.FINISH_REASON_STOP: FinishReason.STOP,
    pb.FINISH_REASON_LENGTH: FinishReason.LENGTH,
}
_LANGUAGE = {Language.UNSPECIFIED: pb.LANGUAGE_UNSPECIFIED, Language.ZH: pb.LANGUAGE_ZH, Language.EN: pb.LANGUAGE_EN}


def as_review_inputs(reviews: Iterable[str | ReviewInput]) -> list[ReviewInput]:
    return [r if isinstance(r, ReviewInput) else ReviewInput(text=r) for r in reviews]


def options_to_pb(options: SummarizeOptions | None) -> pb.SummarizeOptions:
    message = pb.SummarizeOptions()
    if options is None:
        return message
    for name in ("beam_size", "max_summary_tokens", "length_penalty", "no_repeat_ngram_size"):
        value = getattr(options, name)
        if value is not None:
            setattr(message, name, value)
    message.language_hint = _LANGUAGE[options.language_hint]
    return message


def summarize_request(
    reviews: Iterable[str | ReviewInput], options: SummarizeOptions | None, request_id: str | None
) -> pb.SummarizeReviewsRequest:
    return pb.SummarizeReviewsRequest(
        reviews=[pb.Review(id=r.id, text=r.text) for r in as_review_inputs(reviews)],
        options=options_to_pb(options),
        request_id=request_id or "",
    )


def summary_from_pb(message: pb.ReviewSummary) -> Summary:
    return Summary(
        id=message.id,
        summary=message.summary,
        input_tokens=message.input_tokens,
        summary_tokens=message.summary_tokens,
        finish_reason=_FINISH.get(message.finish_reason, FinishReason.UNSPECIFIED),
    )


def summarize_result_from_pb(message: pb.SummarizeReviewsResponse) -> SummarizeResult:
    return SummarizeResult(
        summaries=[summary_from_pb(s) for s in message.summaries],
        request_id=message.request_id,
        model=message.model,
    )


def model_info_from_pb(message: pb.GetModelInfoResponse) -> ModelInfo:
    return ModelInfo(
        model_name=message.model_name,
        model_version=message.model_version,
        languages=list(message.languages),
        engine=message.engine,
        max_reviews_per_request=message.max_reviews_per_request,
        max_review_chars=message.max_review_chars,
        max_input_tokens=message.max_input_tokens,
        max_beam_size=message.max_beam_size,
        max_summary_tokens=message.max_summary_tokens,
    )
