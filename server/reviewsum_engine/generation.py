"""Plain request/result types of the engine, shared by the search code, the Triton model and tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["eos", "length", "cancelled"]

# Beams multiply decoder compute and KV-cache memory per request; past 8 the quality gain is nil for summaries.
MAX_NUM_BEAMS = 8
MAX_NO_REPEAT_NGRAM_SIZE = 16


class InvalidOptionsError(ValueError):
    """A request's generation options are out of range; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 48
    num_beams: int = 1
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 3

    def validate(self, max_new_tokens_limit: int) -> None:
        """Raise InvalidOptionsError for values the engine cannot honour (limit: decoder positions - 1)."""
        if not 1 <= self.max_new_tokens <= max_new_tokens_limit:
            raise InvalidOptionsError(
                "max_new_tokens", f"must be in [1, {max_new_tokens_limit}], got {self.max_new_tokens}"
            )
        if not 1 <= self.num_beams <= MAX_NUM_BEAMS:
            raise InvalidOptionsError("num_beams", f"must be in [1, {MAX_NUM_BEAMS}], got {self.num_beams}")
        if not math.isfinite(self.length_penalty):
            raise InvalidOptionsError("length_penalty", f"must be finite, got {self.length_penalty}")
        if not 0 <= self.no_repeat_ngram_size <= MAX_NO_REPEAT_NGRAM_SIZE:
            raise InvalidOptionsError(
                "no_repeat_ngram_size", f"must be in [0, {MAX_NO_REPEAT_NGRAM_SIZE}], got {self.no_repeat_ngram_size}"
            )


@dataclass(frozen=True)
class Generation:
    """One summary.

    `input_tokens` counts the (possibly truncated) source ids including the appended `</s>`;
    `output_tokens` counts generated ids including a final `</s>` (the decoder start token is not counted).
    `finish_reason`: "eos" when the model chose to stop, "length" at max_new_tokens (also when the checkpoint's
    forced_eos_token_id forced `</s>` as the last token), "cancelled" when the caller cancelled.
    """

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: FinishReason
