"""reviewsum.v1.ReviewSummarizer handlers: validate, convert, call the engine, convert back."""

from __future__ import annotations

import logging
import time
import uuid

import grpc
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import Overloaded, SummaryResult
from reviewsum_server.engine import SummarizationEngine
from reviewsum_server.logs import REQUEST_ID
from reviewsum_server.metrics import GatewayMetrics
from reviewsum_server.rpc_errors import maps_errors
from reviewsum_server.validation import validate_summarize_request

log = logging.getLogger(__name__)

FINISH_REASONS = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH}


def summary_to_pb(review: pb.Review, result: SummaryResult) -> pb.ReviewSummary:
    return pb.ReviewSummary(
        id=review.id,
        summary=result.summary,
        input_tokens=result.input_tokens,
        summary_tokens=result.summary_tokens,
        finish_reason=FINISH_REASONS.get(result.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
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
        params = validate_summarize_request(request, self._config)
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
            summaries=[summary_to_pb(review, result) for review, result in zip(request.reviews, results, strict=True)],
            request_id=request_id,
            model=f"{model.name}/{model.version}",
        )

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
            max_review_chars=self._config.max_review_chars,
            max_input_tokens=model.max_input_tokens,
            max_beam_size=self._config.max_beam_size,
            max_summary_tokens=self._config.max_summary_tokens,
        )
