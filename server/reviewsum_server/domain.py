"""Plain types between the gRPC layer and the engine, and the domain errors the gateway maps to status codes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenerationParams:
    beam_size: int = 1
    max_summary_tokens: int = 48
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3


@dataclass(frozen=True)
class SummaryResult:
    summary: str
    input_tokens: int
    summary_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass(frozen=True)
class StreamChunk:
    """A piece of a summary being generated; `final` carries the finish reason and token counts."""

    text_delta: str
    final: SummaryResult | None = None


@dataclass(frozen=True)
class ModelDescription:
    name: str
    version: str
    engine: str
    languages: tuple[str, ...] = ("zh", "en")
    max_input_tokens: int = 256


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class GatewayError(Exception):
    """Base of the errors the gateway turns into a gRPC status (see `rpc_errors.STATUS_TABLE`)."""

    reason = "INTERNAL"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata or {}


class InvalidRequest(GatewayError):
    reason = "INVALID_REQUEST"

    def __init__(self, violations: list[Violation]) -> None:
        noun = "field" if len(violations) == 1 else "fields"
        super().__init__(f"invalid request: {len(violations)} {noun} failed validation")
        self.violations = violations


class EngineUnavailable(GatewayError):
    """Triton is unreachable or the model is not ready."""

    reason = "ENGINE_UNAVAILABLE"


class Overloaded(GatewayError):
    """The gateway's in-flight limit or Triton's queue is full: retry later."""

    reason = "OVERLOADED"

    def __init__(self, message: str, *, retry_after_s: float = 0.5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(GatewayError):
    reason = "DEADLINE_EXCEEDED"


class RequestCancelled(GatewayError):
    reason = "CANCELLED"


class EngineFailure(GatewayError):
    """The engine failed in a way the caller cannot fix; the detail goes to the log only."""

    reason = "ENGINE_FAILURE"


@dataclass
class RequestContext:
    request_id: str
    method: str
    review_count: int = 0
    extra: dict[str, str] = field(default_factory=dict)
