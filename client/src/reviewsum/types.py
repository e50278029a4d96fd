"""Typed results and inputs of the SDK, free of protobuf types."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    UNSPECIFIED = "unspecified"


class Language(StrEnum):
    UNSPECIFIED = "unspecified"
    ZH = "zh"
    EN = "en"


@dataclass(frozen=True)
class ReviewInput:
    text: str
    id: str = ""


@dataclass(frozen=True)
class SummarizeOptions:
    """Unset fields (None) take the server's documented defaults."""

    beam_size: int | None = None
    max_summary_tokens: int | None = None
    length_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    language_hint: Language = Language.UNSPECIFIED


@dataclass(frozen=True)
class Summary:
    id: str
    summary: str
    input_tokens: int
    summary_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class SummarizeResult:
    summaries: list[Summary]
    request_id: str
    model: str


@dataclass(frozen=True)
class ModelInfo:
    model_name: str
    model_version: str
    languages: list[str]
    engine: str
    max_reviews_per_request: int
    max_review_chars: int
    max_input_tokens: int
    max_beam_size: int
    max_summary_tokens: int


@dataclass(frozen=True)
class StreamEvent:
    """A piece of a summary being generated; the last event has `finished` set and the counts filled in."""

    text_delta: str
    finished: bool
    finish_reason: FinishReason | None = None
    input_tokens: int = 0
    summary_tokens: int = 0


@dataclass(frozen=True)
class ProductReviewInput:
    text: str
    id: str = ""
    rating: int | None = None


@dataclass(frozen=True)
class Aspect:
    phrase: str
    review_count: int
    review_ids: list[str]


@dataclass(frozen=True)
class ProductSummary:
    product_id: str
    overall_summary: str
    pros: list[Aspect]
    cons: list[Aspect]
    rating_distribution: dict[int, int]
    positive_share: float
    negative_share: float
    review_count: int
    language: str
    request_id: str
    model: str


@dataclass(frozen=True)
class ItemError:
    code: str
    message: str
    field: str


@dataclass(frozen=True)
class BulkResult:
    """One answer of a bulk stream: `summary` on success, `error` for a bad or failed item."""

    id: str
    summary: Summary | None
    error: ItemError | None

    @property
    def ok(self) -> bool:
        return self.error is None
