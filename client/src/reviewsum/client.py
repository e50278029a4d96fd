"""Synchronous and asynchronous clients for reviewsum.v1.

    with ReviewSumClient("localhost:50051") as client:
        result = client.summarize(["性能出色，通话顺畅，但电池续航时间较短。"])
        print(result.summaries[0].summary)

    async with AsyncReviewSumClient() as client:
        result = await client.summarize(["Great fit, but the color fades."])

Every method takes `timeout` (seconds, the call's deadline; default the client's)
and raises a `reviewsum.errors.ReviewSumError` subclass on failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Self

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reviewsum import _convert
from reviewsum._channel import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT_S,
    SERVICE_NAME,
    RetryPolicy,
    TlsConfig,
    auth_metadata,
    channel_options,
)
from reviewsum.errors import mapped_errors
from reviewsum.types import (
    BulkResult,
    ModelInfo,
    ProductReviewInput,
    ProductSummary,
    ReviewInput,
    StreamEvent,
    SummarizeOptions,
    SummarizeResult,
)
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc


class _ClientSettings:
    def __init__(
        self,
        address: str,
        timeout: float,
        api_key: str | None,
        tls: TlsConfig | None,
        retry: RetryPolicy,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = auth_metadata(api_key)
        self.tls = tls
        self.options = channel_options(retry, tls)

    def deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout


class ReviewSumClient:
    """Blocking client; one channel for the client's lifetime. Thread-safe."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        tls: TlsConfig | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = _ClientSettings(address, timeout, api_key, tls, retry or RetryPolicy())
        s = self._settings
        self._channel = (
            grpc.secure_channel(address, s.tls.credentials(), options=s.options)
            if s.tls is not None
            else grpc.insecure_channel(address, options=s.options)
        )
        self._stub = pb_grpc.ReviewSummarizerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def summarize(
        self,
        reviews: Iterable[str | ReviewInput],
        *,
        options: SummarizeOptions | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> SummarizeResult:
        """One summary per review, in order."""
        request = _convert.summarize_request(reviews, options, request_id)
        with mapped_errors():
            response = self._stub.SummarizeReviews(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.summarize_result_from_pb(response)

    def model_info(self, *, timeout: float | None = None) -> ModelInfo:
        with mapped_errors():
            response = self._stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.model_info_from_pb(response)

    def health(self, *, timeout: float | None = None) -> bool:
        """True only when the service reports SERVING (the model is loaded and ready)."""
        with mapped_errors():
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self._settings.deadline(timeout)
            )
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def stream(
        self,
        review: str | ReviewInput,
        *,
        options: SummarizeOptions | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[StreamEvent]:
        """The summary as it is generated; stop iterating (or close the iterator) to cancel the generation."""
        request = _convert.stream_request(review, options, request_id)
        call = self._stub.StreamSummarizeReview(
            request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
        )
        try:
            with mapped_errors():
                for message in call:
                    yield _convert.stream_event_from_pb(message)
        finally:
            call.cancel()

    def summarize_product(
        self,
        reviews: Iterable[str | ProductReviewInput],
        *,
        product_id: str = "",
        max_aspects: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> ProductSummary:
        """Overall summary, top pros and cons with supporting counts, ratings and sentiment shares."""
        request = _convert.product_request(reviews, product_id, max_aspects, request_id)
        with mapped_errors():
            response = self._stub.SummarizeProduct(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.product_from_pb(response)

    def summarize_bulk(
        self,
        reviews: Iterable[str | ReviewInput],
        *,
        options: SummarizeOptions | None = None,
        timeout: float | None = None,
    ) -> Iterator[BulkResult]:
        """Stream reviews in, results out as they finish (any order; match them by id).

        Reviews without an id get their position as id. The input is read only as fast as
        the server accepts it, so a generator of millions of reviews is fine.
        """
        requests = (
            _convert.bulk_request(ReviewInput(r.text, r.id or str(i)), options)
            for i, r in enumerate(_convert.iter_review_inputs(reviews))
        )
        call = self._stub.StreamSummarizeReviews(
            requests, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
        )
        try:
            with mapped_errors():
                for message in call:
                    yield _convert.bulk_result_from_pb(message)
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncReviewSumClient:
    """asyncio client; create and use it inside one running event loop."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        api_key: str | None = None,
        tls: TlsConfig | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = _ClientSettings(address, timeout, api_key, tls, retry or RetryPolicy())
        s = self._settings
        self._channel = (
            grpc.aio.secure_channel(address, s.tls.credentials(), options=s.options)
            if s.tls is not None
            else grpc.aio.insecure_channel(address, options=s.options)
        )
        self._stub = pb_grpc.ReviewSummarizerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def summarize(
        self,
        reviews: Iterable[str | ReviewInput],
        *,
        options: SummarizeOptions | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> SummarizeResult:
        """One summary per review, in order."""
        request = _convert.summarize_request(reviews, options, request_id)
        with mapped_errors():
            response = await self._stub.SummarizeReviews(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.summarize_result_from_pb(response)

    async def model_info(self, *, timeout: float | None = None) -> ModelInfo:
        with mapped_errors():
            response = await self._stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.model_info_from_pb(response)

    async def health(self, *, timeout: float | None = None) -> bool:
        """True only when the service reports SERVING (the model is loaded and ready)."""
        with mapped_errors():
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self._settings.deadline(timeout)
            )
        return response.status == health_pb2.HealthCheckResponse.SERVING

    async def stream(
        self,
        review: str | ReviewInput,
        *,
        options: SummarizeOptions | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The summary as it is generated; stop iterating (or close the iterator) to cancel the generation."""
        request = _convert.stream_request(review, options, request_id)
        call = self._stub.StreamSummarizeReview(
            request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
        )
        try:
            with mapped_errors():
                async for message in call:
                    yield _convert.stream_event_from_pb(message)
        finally:
            call.cancel()

    async def summarize_product(
        self,
        reviews: Iterable[str | ProductReviewInput],
        *,
        product_id: str = "",
        max_aspects: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> ProductSummary:
        """Overall summary, top pros and cons with supporting counts, ratings and sentiment shares."""
        request = _convert.product_request(reviews, product_id, max_aspects, request_id)
        with mapped_errors():
            response = await self._stub.SummarizeProduct(
                request, timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
            )
        return _convert.product_from_pb(response)

    async def summarize_bulk(
        self,
        reviews: Iterable[str | ReviewInput] | AsyncIterable[str | ReviewInput],
        *,
        options: SummarizeOptions | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkResult]:
        """Stream reviews in, results out as they finish (any order; match them by id).

        Reviews without an id get their position as id; the input is consumed only as fast
        as the server accepts it.
        """

        async def requests() -> AsyncIterator[pb.StreamSummarizeReviewsRequest]:
            index = 0
            async for review in _convert.aiter_review_inputs(reviews):
                yield _convert.bulk_request(ReviewInput(review.text, review.id or str(index)), options)
                index += 1

        call = self._stub.StreamSummarizeReviews(
            requests(), timeout=self._settings.deadline(timeout), metadata=self._settings.metadata
        )
        try:
            with mapped_errors():
                async for message in call:
                    yield _convert.bulk_result_from_pb(message)
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
