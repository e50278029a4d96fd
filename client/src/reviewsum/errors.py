"""The SDK's exception tree. Every error raised by a client is a `ReviewSumError`.

    ReviewSumError                 any failure of a call
    ├── InvalidArgumentError       INVALID_ARGUMENT: `field_violations` names each bad field
    ├── UnauthenticatedError       UNAUTHENTICATED: missing or unknown API key
    ├── PermissionDeniedError      PERMISSION_DENIED
    ├── NotFoundError              NOT_FOUND
    ├── ResourceExhaustedError     RESOURCE_EXHAUSTED: rate limit or capacity; `retry_delay` when the server gives one
    ├── UnavailableError           UNAVAILABLE: service or model not ready, connection failed
    ├── DeadlineExceededError      DEADLINE_EXCEEDED: the call's timeout passed
    ├── CancelledError             CANCELLED
    └── InternalError              INTERNAL and anything else unexpected

Each carries the gRPC `code`, the server's `message`, the `reason` and `metadata`
of its `google.rpc.ErrorInfo` (when sent), and the raw `details` messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ReviewSumError(Exception):
    """Base class: a call failed. `code` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay: float | None = None,
        details: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.field_violations = field_violations
        self.retry_delay = retry_delay
        self.details = details

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.field_violations:
            text += " (" + "; ".join(f"{v.field}: {v.description}" for v in self.field_violations) + ")"
        return text


class InvalidArgumentError(ReviewSumError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class UnauthenticatedError(ReviewSumError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ReviewSumError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(ReviewSumError):
    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(ReviewSumError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(ReviewSumError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(ReviewSumError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(ReviewSumError):
    code = grpc.StatusCode.CANCELLED


class InternalError(ReviewSumError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ReviewSumError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        UnauthenticatedError,
        PermissionDeniedError,
        NotFoundError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
        InternalError,
    )
}


@dataclass
class _Details:
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: list[FieldViolation] = field(default_factory=list)
    retry_delay: float | None = None
    messages: list[Any] = field(default_factory=list)


def _unpack_details(status: status_pb2.Status | None) -> _Details:
    found = _Details()
    for detail in status.details if status is not None else ():
        found.messages.append(_unpack_one(detail, found))
    return found


def _unpack_one(detail: any_pb2.Any, found: _Details) -> Any:
    for message_type in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            if isinstance(message, error_details_pb2.ErrorInfo):
                found.reason, found.metadata = message.reason, dict(message.metadata)
            elif isinstance(message, error_details_pb2.BadRequest):
                found.violations += [FieldViolation(v.field, v.description) for v in message.field_violations]
            else:
                found.retry_delay = message.retry_delay.ToTimedelta().total_seconds()
            return message
    return detail


def from_rpc_error(error: grpc.RpcError) -> ReviewSumError:
    """Turn a gRPC error (sync or aio) into the matching `ReviewSumError`, details unpacked."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        status = None
    found = _unpack_details(status)
    cls = _BY_CODE.get(code, InternalError)
    return cls(
        message or code.name,
        code=code,
        reason=found.reason,
        metadata=found.metadata,
        field_violations=tuple(found.violations),
        retry_delay=found.retry_delay,
        details=tuple(found.messages),
    )


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """Re-raise gRPC errors (sync or aio) as the matching `ReviewSumError`."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
