"""Conversion between the SDK's dataclasses and reviewsum.v1 messages."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from reviewsum.types import (
    Aspect,
    BulkResult,
    FinishReason,
    ItemError,
    Language,
    ModelInfo,
    ProductReviewInput,
    ProductSummary,
    ReviewInput,
    StreamEvent,
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


def as_review_input(review: str | ReviewInput) -> ReviewInput:
    return review if isinstance(review, ReviewInput) else ReviewInput(text=review)


def as_review_inputs(reviews: Iterable[str | ReviewInput]) -> list[ReviewInput]:
    return [as_review_input(r) for r in reviews]


def iter_review_inputs(reviews: Iterable[str | ReviewInput]) -> Iterator[ReviewInput]:
    for review in reviews:
        yield as_review_input(review)


async def aiter_review_inputs(
    reviews: Iterable[str | ReviewInput] | AsyncIterable[str | ReviewInput],
) -> AsyncIterator[ReviewInput]:
    if isinstance(reviews, AsyncIterable):
        async for review in reviews:
            yield as_review_input(review)
    else:
        for review in reviews:
            yield as_review_input(review)


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


def stream_request(
    review: str | ReviewInput, options: SummarizeOptions | None, request_id: str | None
) -> pb.StreamSummarizeReviewRequest:
    (item,) = as_review_inputs([review])
    return pb.StreamSummarizeReviewRequest(
        review=pb.Review(id=item.id, text=item.text), options=options_to_pb(options), request_id=request_id or ""
    )


def stream_event_from_pb(message: pb.StreamSummarizeReviewResponse) -> StreamEvent:
    finished = message.finish_reason != pb.FINISH_REASON_UNSPECIFIED
    return StreamEvent(
        text_delta=message.text_delta,
        finished=finished,
        finish_reason=_FINISH.get(message.finish_reason, FinishReason.UNSPECIFIED) if finished else None,
        input_tokens=message.input_tokens,
        summary_tokens=message.summary_tokens,
    )


def product_request(
    reviews: Iterable[str | ProductReviewInput],
    product_id: str,
    max_aspects: int | None,
    request_id: str | None,
) -> pb.SummarizeProductRequest:
    items = [r if isinstance(r, ProductReviewInput) else ProductReviewInput(text=r) for r in reviews]
    message = pb.SummarizeProductRequest(product_id=product_id, request_id=request_id or "")
    for item in items:
        review = message.reviews.add(id=item.id, text=item.text)
        if item.rating is not None:
            review.rating = item.rating
    if max_aspects is not None:
        message.max_aspects = max_aspects
    return message


def _aspect_from_pb(message: pb.Aspect) -> Aspect:
    return Aspect(phrase=message.phrase, review_count=message.review_count, review_ids=list(message.review_ids))


def product_from_pb(message: pb.SummarizeProductResponse) -> ProductSummary:
    return ProductSummary(
        product_id=message.product_id,
        overall_summary=message.overall_summary,
        pros=[_aspect_from_pb(a) for a in message.pros],
        cons=[_aspect_from_pb(a) for a in message.cons],
        rating_distribution={r.stars: r.count for r in message.rating_distribution},
        positive_share=message.positive_share,
        negative_share=message.negative_share,
        review_count=message.review_count,
        language=message.language,
        request_id=message.request_id,
        model=message.model,
    )


def bulk_request(item: ReviewInput, options: SummarizeOptions | None) -> pb.StreamSummarizeReviewsRequest:
    return pb.StreamSummarizeReviewsRequest(id=item.id, text=item.text, options=options_to_pb(options))


def bulk_result_from_pb(message: pb.StreamSummarizeReviewsResponse) -> BulkResult:
    if message.HasField("error"):
        error = ItemError(code=message.error.code, message=message.error.message, field=message.error.field)
        return BulkResult(id=message.id, summary=None, error=error)
    return BulkResult(id=message.id, summary=summary_from_pb(message.summary), error=None)
