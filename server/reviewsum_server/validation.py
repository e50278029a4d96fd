"""Request validation: every problem found, each named by its field path, before any work reaches Triton."""

from __future__ import annotations

import json
from typing import Any

from reviewsum.v1 import reviewsum_pb2 as pb

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import GenerationParams, InvalidRequest, Violation

DEFAULTS = GenerationParams()
MAX_LENGTH_PENALTY = 3.0
MAX_NO_REPEAT_NGRAM = 10


def _check_range(field: str, value: float, low: float, high: float) -> list[Violation]:
    if low <= value <= high:
        return []
    return [Violation(field, f"must be between {low:g} and {high:g}, got {value:g}")]


class TokenCounter:
    """Counts tokens with the served model's own tokenizer, skipping texts too short to pass the limit.

    With an NFC (or no) normalizer, a text's normalized form has at most 3x its UTF-8 bytes, and every
    token covers at least one byte of it, except a leading word-start piece and the special tokens the
    post-processor adds; a text under that bound needs no tokenization to pass the limit. Other
    normalizers (NFKC can expand far more) always count.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        normalizer = json.loads(tokenizer.to_str()).get("normalizer")
        self._cheap_bound = normalizer is None or normalizer.get("type") == "NFC"
        self._extra_tokens = 1 + tokenizer.num_special_tokens_to_add(False)

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def may_exceed(self, text: str, limit: int) -> bool:
        return not self._cheap_bound or 3 * len(text.encode("utf-8")) + self._extra_tokens > limit


def text_violations(path: str, text: str, config: GatewayConfig, count_tokens: TokenCounter | None) -> list[Violation]:
    if not text.strip():
        return [Violation(f"{path}.text", "must not be empty or whitespace only")]
    if len(text) > config.max_review_chars:
        return [Violation(f"{path}.text", f"has {len(text)} characters; the limit is {config.max_review_chars}")]
    if (
        count_tokens is not None
        and count_tokens.may_exceed(text, config.max_review_tokens)
        and (tokens := count_tokens(text)) > config.max_review_tokens
    ):
        return [Violation(f"{path}.text", f"has {tokens} tokens; the limit is {config.max_review_tokens}")]
    return []


def id_violations(path: str, review_id: str, config: GatewayConfig) -> list[Violation]:
    if len(review_id) > config.max_id_chars:
        return [Violation(f"{path}.id", f"has {len(review_id)} characters; the limit is {config.max_id_chars}")]
    return []


def review_violations(
    index: int, review: pb.Review, config: GatewayConfig, count_tokens: TokenCounter | None
) -> list[Violation]:
    path = f"reviews[{index}]"
    return text_violations(path, review.text, config, count_tokens) + id_violations(path, review.id, config)


def options_violations(options: pb.SummarizeOptions, config: GatewayConfig) -> list[Violation]:
    found: list[Violation] = []
    if options.HasField("beam_size"):
        found += _check_range("options.beam_size", options.beam_size, 1, config.max_beam_size)
    if options.HasField("max_summary_tokens"):
        found += _check_range("options.max_summary_tokens", options.max_summary_tokens, 1, config.max_summary_tokens)
    if options.HasField("length_penalty"):
        found += _check_range("options.length_penalty", options.length_penalty, 0.0, MAX_LENGTH_PENALTY)
    if options.HasField("no_repeat_ngram_size"):
        found += _check_range("options.no_repeat_ngram_size", options.no_repeat_ngram_size, 0, MAX_NO_REPEAT_NGRAM)
    if options.language_hint not in pb.Language.values():
        found.append(Violation("options.language_hint", f"unknown Language value {options.language_hint}"))
    return found


def validate_summarize_request(
    request: pb.SummarizeReviewsRequest, config: GatewayConfig, count_tokens: TokenCounter | None = None
) -> GenerationParams:
    """Return the generation parameters, or raise `InvalidRequest` listing every violation."""
    found: list[Violation] = []
    count = len(request.reviews)
    if not 1 <= count <= config.max_reviews_per_request:
        found.append(Violation("reviews", f"must hold 1 to {config.max_reviews_per_request} reviews, got {count}"))
    for index, review in enumerate(request.reviews):
        found += review_violations(index, review, config, count_tokens)
    found += options_violations(request.options, config)
    if len(request.request_id) > config.max_id_chars:
        found.append(Violation("request_id", f"has more than {config.max_id_chars} characters"))
    if found:
        raise InvalidRequest(found)
    return params_from_options(request.options)


def params_from_options(options: pb.SummarizeOptions) -> GenerationParams:
    return GenerationParams(
        beam_size=options.beam_size if options.HasField("beam_size") else DEFAULTS.beam_size,
        max_summary_tokens=(
            options.max_summary_tokens if options.HasField("max_summary_tokens") else DEFAULTS.max_summary_tokens
        ),
        length_penalty=options.length_penalty if options.HasField("length_penalty") else DEFAULTS.length_penalty,
        no_repeat_ngram_size=(
            options.no_repeat_ngram_size if options.HasField("no_repeat_ngram_size") else DEFAULTS.no_repeat_ngram_size
        ),
    )


def validate_bulk_item(
    item: pb.StreamSummarizeReviewsRequest, config: GatewayConfig, count_tokens: TokenCounter | None = None
) -> GenerationParams:
    """Field paths are relative to the item: `text`, `options.beam_size`."""
    found = [
        Violation(v.field.removeprefix("item."), v.description)
        for v in text_violations("item", item.text, config, count_tokens)
    ]
    if not item.id:
        found.append(Violation("id", "must not be empty: results are matched to inputs by id"))
    found += id_violations("", item.id, config)
    found += options_violations(item.options, config)
    if found:
        raise InvalidRequest(found)
    return params_from_options(item.options)


def validate_stream_request(
    request: pb.StreamSummarizeReviewRequest, config: GatewayConfig, count_tokens: TokenCounter | None = None
) -> GenerationParams:
    found = text_violations("review", request.review.text, config, count_tokens) + id_violations(
        "review", request.review.id, config
    )
    found += options_violations(request.options, config)
    if request.options.HasField("beam_size") and request.options.beam_size != 1:
        found.append(Violation("options.beam_size", "streaming is greedy: must be 1 or unset"))
    if len(request.request_id) > config.max_id_chars:
        found.append(Violation("request_id", f"has more than {config.max_id_chars} characters"))
    if found:
        raise InvalidRequest(found)
    return params_from_options(request.options)


MAX_ASPECTS = 10
DEFAULT_ASPECTS = 5


def validate_product_request(
    request: pb.SummarizeProductRequest, config: GatewayConfig, count_tokens: TokenCounter | None = None
) -> int:
    """Returns the number of aspects to report."""
    found: list[Violation] = []
    count = len(request.reviews)
    if not 1 <= count <= config.max_reviews_per_product:
        found.append(Violation("reviews", f"must hold 1 to {config.max_reviews_per_product} reviews, got {count}"))
    for index, review in enumerate(request.reviews):
        path = f"reviews[{index}]"
        found += text_violations(path, review.text, config, count_tokens) + id_violations(path, review.id, config)
        if review.HasField("rating") and not 1 <= review.rating <= 5:
            found.append(Violation(f"{path}.rating", f"must be 1 to 5 stars, got {review.rating}"))
    if request.HasField("max_aspects"):
        found += _check_range("max_aspects", request.max_aspects, 1, MAX_ASPECTS)
    if request.language_hint not in pb.Language.values():
        found.append(Violation("language_hint", f"unknown Language value {request.language_hint}"))
    if len(request.request_id) > config.max_id_chars:
        found.append(Violation("request_id", f"has more than {config.max_id_chars} characters"))
    if found:
        raise InvalidRequest(found)
    return request.max_aspects if request.HasField("max_aspects") else DEFAULT_ASPECTS


def token_counter(tokenizer_file: str) -> TokenCounter | None:
    """Counts the model's tokens with its own tokenizer (what the model will read); None when not configured."""
    if not tokenizer_file:
        return None
    from tokenizers import Tokenizer

    return TokenCounter(Tokenizer.from_file(tokenizer_file))
