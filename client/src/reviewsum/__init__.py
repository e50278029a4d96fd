"""ReviewSum Python SDK: typed sync and async clients for the reviewsum.v1 gRPC API."""

from reviewsum._channel import DEFAULT_ADDRESS, NO_RETRIES, RetryPolicy, TlsConfig
from reviewsum.client import AsyncReviewSumClient, ReviewSumClient
from reviewsum.errors import (
    CancelledError,
    DeadlineExceededError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ReviewSumError,
    UnauthenticatedError,
    UnavailableError,
)
from reviewsum.types import (
    FinishReason,
    Language,
    ModelInfo,
    ReviewInput,
    SummarizeOptions,
    SummarizeResult,
    Summary,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "NO_RETRIES",
    "AsyncReviewSumClient",
    "CancelledError",
    "DeadlineExceededError",
    "FieldViolation",
    "FinishReason",
    "InternalError",
    "InvalidArgumentError",
    "Language",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ReviewInput",
    "ReviewSumClient",
    "ReviewSumError",
    "SummarizeOptions",
    "SummarizeResult",
    "Summary",
    "TlsConfig",
    "UnauthenticatedError",
    "UnavailableError",
]
