"""One table from domain errors to gRPC status codes, and the rich status details sent with them."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reviewsum_server.domain import (
    DeadlineExceeded,
    EngineFailure,
    EngineUnavailable,
    GatewayError,
    InvalidRequest,
    Overloaded,
    RequestCancelled,
)
from reviewsum_server.logs import REQUEST_ID

log = logging.getLogger(__name__)
DOMAIN = "reviewsum.v1"
GENERIC_INTERNAL_MESSAGE = "internal error; the request id is in the gateway log"

STATUS_TABLE: dict[type[GatewayError], grpc.StatusCode] = {
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    EngineUnavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    RequestCancelled: grpc.StatusCode.CANCELLED,
    EngineFailure: grpc.StatusCode.INTERNAL,
}


def code_for(error: GatewayError) -> grpc.StatusCode:
    for error_type in type(error).__mro__:
        if error_type in STATUS_TABLE:
            return STATUS_TABLE[error_type]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(error: GatewayError, request_id: str) -> status_pb2.Status:
    code = code_for(error)
    message = GENERIC_INTERNAL_MESSAGE if code == grpc.StatusCode.INTERNAL else error.message
    metadata = {"request_id": request_id, **error.metadata}
    details = [pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))]
    if isinstance(error, InvalidRequest):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(pack(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, Overloaded):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        details.append(pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)


def retry_pushback(error: GatewayError) -> tuple[tuple[str, str], ...]:
    """gRPC clients' built-in retries wait this long instead of their own backoff."""
    if isinstance(error, Overloaded):
        return (("grpc-retry-pushback-ms", str(int(error.retry_after_s * 1000))),)
    return ()


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


async def abort_for(error: BaseException, context: grpc.aio.ServicerContext, handler_name: str) -> None:
    """Abort the call with the status the table gives; unexpected errors are logged and become INTERNAL."""
    if isinstance(error, GatewayError):
        gateway_error = error
        if code_for(error) == grpc.StatusCode.INTERNAL:
            log.error("%s failed: %s", handler_name, error.message)  # callers get a generic message
    else:
        log.error("unexpected error in %s", handler_name, exc_info=error)
        gateway_error = EngineFailure("unexpected error")
    status = rpc_status.to_status(rich_status(gateway_error, REQUEST_ID.get()))
    await context.abort(
        status.code, status.details, trailing_metadata=status.trailing_metadata + retry_pushback(gateway_error)
    )


def maps_errors(handler: Handler) -> Handler:
    """Turn a domain error (or any unexpected exception) into exactly one gRPC status with details.

    Works for unary handlers and for async-generator (server-streaming) handlers.
    """
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in handler(self, request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await abort_for(error, context, handler.__name__)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_for(error, context, handler.__name__)

    return wrapper  # type: ignore[return-value]
