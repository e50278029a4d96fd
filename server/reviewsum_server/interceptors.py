"""Server interceptors: API-key authentication with per-key rate limits, and per-call metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reviewsum_server.auth import ApiKeyAuthenticator, AuthError
from reviewsum_server.logs import REQUEST_ID
from reviewsum_server.metrics import GatewayMetrics
from reviewsum_server.rpc_errors import DOMAIN, pack

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
Behavior = Callable[..., Any]


def method_name(full_method: str) -> str:
    return full_method.rsplit("/", 1)[-1]


def _rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior, bool, bool], Behavior]) -> Any:
    """A handler of the same kind with its behavior wrapped; wrap(behavior, request_streaming, response_streaming)."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False, False), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, False, True), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, True, False), handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True, True), handler.request_deserializer, handler.response_serializer
    )


def _rejection(code: grpc.StatusCode, reason: str, message: str, retry_after_s: float | None) -> grpc.Status:
    details = [pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))]
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, int(retry_after_s * 1000)))
        details.append(pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details))


def _rejecting(status: grpc.Status, extra_metadata: tuple[tuple[str, str], ...] = ()) -> Callable[..., Behavior]:
    def wrap(behavior: Behavior, request_streaming: bool, response_streaming: bool) -> Behavior:
        async def reject(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                status.code, status.details, trailing_metadata=status.trailing_metadata + extra_metadata
            )

        if response_streaming:

            async def reject_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await reject(request, context)
                yield  # pragma: no cover - abort raises first

            return reject_stream
        return reject

    return wrap


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: ApiKeyAuthenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            key = self._authenticator.authenticate(metadata.get("authorization"))
        except AuthError as exc:
            status = _rejection(grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID", str(exc), None)
            return _rebuild(handler, _rejecting(status))
        wait_s = self._authenticator.wait_for(key)
        if wait_s > 0:
            status = _rejection(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", "rate limit of this API key exceeded", wait_s
            )
            return _rebuild(handler, _rejecting(status, (("grpc-retry-pushback-ms", str(int(wait_s * 1000))),)))
        return handler


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call by method and final status code, and times it; with a tracer, one span per call."""

    def __init__(self, metrics: GatewayMetrics, tracer: Any | None = None) -> None:
        self._metrics = metrics
        self._tracer = tracer
        # Wrapping a handler builds new handler objects; do it once per method, not on every call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full_method = handler_call_details.method
        cached = self._wrapped.get(full_method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        method = method_name(full_method)
        wrapped = _rebuild(handler, lambda behavior, _req, streaming: self._observed(method, behavior, streaming))
        self._wrapped[full_method] = (handler, wrapped)
        return wrapped

    def _record(self, method: str, code: grpc.StatusCode, started: float, span: Any | None) -> None:
        self._metrics.requests.labels(method, code.name).inc()
        self._metrics.latency.labels(method).observe(time.perf_counter() - started)
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.set_attribute("reviewsum.request_id", REQUEST_ID.get())
            span.end()

    def _start_span(self, method: str) -> Any | None:
        if self._tracer is None:
            return None
        return self._tracer.start_span(
            f"reviewsum.v1.ReviewSummarizer/{method}",
            attributes={"rpc.system": "grpc", "rpc.service": "reviewsum.v1.ReviewSummarizer", "rpc.method": method},
        )

    @contextlib.contextmanager
    def _observing(self, method: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
        started, code, span = time.perf_counter(), grpc.StatusCode.OK, self._start_span(method)
        self._metrics.inflight.inc()
        try:
            yield
        except BaseException as error:
            code = _final_code(error, context)
            raise
        finally:
            self._metrics.inflight.dec()
            self._record(method, code, started, span)

    def _observed(self, method: str, behavior: Behavior, response_streaming: bool) -> Behavior:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._observing(method, context):
                return await behavior(request, context)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with self._observing(method, context):
                async for response in behavior(request, context):
                    yield response

        return streaming if response_streaming else unary


def _final_code(error: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a call ends with when its handler raises `error`."""
    if isinstance(error, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    if isinstance(error, (asyncio.CancelledError, GeneratorExit)):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN
