"""What the gateway needs from an inference engine; Triton implements it, tests swap in fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from reviewsum_server.domain import GenerationParams, ModelDescription, StreamChunk, SummaryResult


class SummarizationEngine(Protocol):
    async def summarize(
        self, texts: Sequence[str], params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> list[SummaryResult]:
        """One result per text, in order; raises a `domain.GatewayError` on failure."""
        ...

    def stream(
        self, text: str, params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> AsyncIterator[StreamChunk]:
        """Greedy decoding of one text as it happens; closing the iterator cancels the generation."""
        ...

    async def is_ready(self) -> bool: ...

    async def describe(self) -> ModelDescription: ...

    async def close(self) -> None: ...
