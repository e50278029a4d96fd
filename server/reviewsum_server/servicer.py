"""reviewsum.v1.ReviewSummarizer handlers: validate, convert, call the engine, convert back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import GenerationParams, Overloaded, StreamChunk, SummaryResult
from reviewsum_server.engine import SummarizationEngine
from reviewsum_server.logs import REQUEST_ID
from reviewsum_server.metrics import GatewayMetrics
from reviewsum_server.product import Aspect, ProductReview, ProductSummary, summarize_product
from reviewsum_server.rpc_errors import maps_errors
from reviewsum_server.streams import BulkStream
from reviewsum_server.validation import (
    DEFAULTS,
    token_counter,
    validate_product_request,
    validate_stream_request,
    validate_summarize_request,
)

log = logging.getLogger(__name__)

FINISH_REASONS = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH}


def summary_to_pb(review_id: str, result: SummaryResult) -> pb.ReviewSummary:
    return pb.ReviewSummary(
        id=review_id,
        summary=result.summary,
        input_tokens=result.input_tokens,
        summary_tokens=result.summary_tokens,
        finish_reason=FINISH_REASONS.get(result.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
    )


def stream_chunk_to_pb(chunk: StreamChunk, request_id: str) -> pb.StreamSummarizeReviewResponse:
    message = pb.StreamSummarizeReviewResponse(text_delta=chunk.text_delta, request_id=request_id)
    if chunk.final is not None:
        message.finish_reason = FINISH_REASONS.get(chunk.final.finish_reason, pb.FINISH_REASON_UNSPECIFIED)
        message.input_tokens = chunk.final.input_tokens
        message.summary_tokens = chunk.final.summary_tokens
    return message


def aspect_to_pb(aspect: Aspect) -> pb.Aspect:
    return pb.Aspect(phrase=aspect.phrase, review_count=aspect.review_count, review_ids=aspect.review_ids)


def product_to_pb(product: ProductSummary, product_id: str, request_id: str, model: str) -> pb.SummarizeProductResponse:
    return pb.SummarizeProductResponse(
        product_id=product_id,
        overall_summary=product.overall,
        pros=[aspect_to_pb(a) for a in product.pros],
        cons=[aspect_to_pb(a) for a in product.cons],
        rating_distribution=[
            pb.RatingCount(stars=stars, count=count) for stars, count in sorted(product.rating_distribution.items())
        ],
        positive_share=product.positive_share,
        negative_share=product.negative_share,
        review_count=product.review_count,
        language=product.language,
        request_id=request_id,
        model=model,
    )


class InflightLimiter:
    """Counts calls in progress and refuses new ones past the limit instead of queueing them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    def __enter__(self) -> None:
        if self.current >= self.limit:
            raise Overloaded(f"gateway is at its limit of {self.limit} calls in flight")
        self.current += 1

    def __exit__(self, *exc: object) -> None:
        self.current -= 1


class ReviewSummarizerServicer(pb_grpc.ReviewSummarizerServicer):
    def __init__(self, config: GatewayConfig, engine: SummarizationEngine, metrics: GatewayMetrics) -> None:
        self._config = config
        self._engine = engine
        self._metrics = metrics
        self._count_tokens = token_counter(config.tokenizer_file)
        self.inflight = InflightLimiter(config.max_inflight_requests)

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return self._config.default_timeout_s if remaining is None else max(remaining, 0.0)

    @maps_errors
    async def SummarizeReviews(
        self, request: pb.SummarizeReviewsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SummarizeReviewsResponse:
        request_id = request.request_id or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        started = time.perf_counter()
        params = validate_summarize_request(request, self._config, self._count_tokens)
        with self.inflight:
            results = await self._engine.summarize(
                [r.text for r in request.reviews], params, timeout_s=self._timeout(context), request_id=request_id
            )
            model = await self._engine.describe()
        self._observe(results)
        log.info(
            "summarized",
            extra={
                "method": "SummarizeReviews",
                "reviews": len(request.reviews),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return pb.SummarizeReviewsResponse(
            summaries=[summary_to_pb(r.id, result) for r, result in zip(request.reviews, results, strict=True)],
            request_id=request_id,
            model=f"{model.name}/{model.version}",
        )

    @maps_errors
    async def StreamSummarizeReview(
        self, request: pb.StreamSummarizeReviewRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamSummarizeReviewResponse]:
        request_id = request.request_id or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        params = validate_stream_request(request, self._config, self._count_tokens)
        with self.inflight:
            chunks = self._engine.stream(
                request.review.text, params, timeout_s=self._timeout(context), request_id=request_id
            )
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    yield stream_chunk_to_pb(chunk, request_id)
                    if chunk.final is not None:
                        self._observe([chunk.final])

    @maps_errors
    async def SummarizeProduct(
        self, request: pb.SummarizeProductRequest, context: grpc.aio.ServicerContext
    ) -> pb.SummarizeProductResponse:
        request_id = request.request_id or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        max_aspects = validate_product_request(request, self._config, self._count_tokens)
        reviews = [
            ProductReview(id=r.id or str(i), text=r.text, rating=r.rating if r.HasField("rating") else None)
            for i, r in enumerate(request.reviews)
        ]
        with self.inflight:
            results = await self._engine.summarize(
                [r.text for r in reviews], DEFAULTS, timeout_s=self._timeout(context), request_id=request_id
            )
            model = await self._engine.describe()
        self._observe(results)
        product = await asyncio.to_thread(summarize_product, reviews, [r.summary for r in results], max_aspects)
        return product_to_pb(product, request.product_id, request_id, f"{model.name}/{model.version}")

    @maps_errors
    async def StreamSummarizeReviews(
        self, request_iterator: AsyncIterator[pb.StreamSummarizeReviewsRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamSummarizeReviewsResponse]:
        REQUEST_ID.set(uuid.uuid4().hex)

        async def summarize_one(text: str, params: GenerationParams) -> SummaryResult:
            (result,) = await self._engine.summarize(
                [text], params, timeout_s=self._timeout(context), request_id=REQUEST_ID.get()
            )
            self._observe([result])
            return result

        with self.inflight:
            async for response in BulkStream(self._config, summarize_one, summary_to_pb, self._count_tokens).run(
                request_iterator
            ):
                yield response

    def _observe(self, results: list[SummaryResult]) -> None:
        self._metrics.reviews_per_request.observe(len(results))
        for result in results:
            self._metrics.summary_tokens.observe(result.summary_tokens)

    @maps_errors
    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        REQUEST_ID.set(uuid.uuid4().hex)
        model = await self._engine.describe()
        return pb.GetModelInfoResponse(
            model_name=model.name,
            model_version=model.version,
            languages=list(model.languages),
            engine=model.engine,
            max_reviews_per_request=self._config.max_reviews_per_request,
            max_reviews_per_product=self._config.max_reviews_per_product,
            max_review_chars=self._config.max_review_chars,
            max_input_tokens=model.max_input_tokens,
            max_beam_size=self._config.max_beam_size,
            max_summary_tokens=self._config.max_summary_tokens,
        )
