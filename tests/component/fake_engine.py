"""An in-memory engine for component tests of the gateway (the layer above the engine)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from reviewsum_server.domain import GatewayError, GenerationParams, ModelDescription, SummaryResult


@dataclass
class FakeEngine:
    ready: bool = True
    delay_s: float = 0.0
    error: BaseException | None = None
    calls: list[tuple[list[str], GenerationParams, float | None, str]] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False

    async def summarize(
        self, texts: Sequence[str], params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> list[SummaryResult]:
        self.calls.append((list(texts), params, timeout_s, request_id))
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return [
            SummaryResult(
                summary=f"摘要:{text[: params.max_summary_tokens]}",
                input_tokens=len(text) + 1,
                summary_tokens=min(len(text), params.max_summary_tokens),
                finish_reason="length" if len(text) > params.max_summary_tokens else "stop",
            )
            for text in texts
        ]

    async def is_ready(self) -> bool:
        return self.ready

    async def describe(self) -> ModelDescription:
        if not self.ready:
            from reviewsum_server.domain import EngineUnavailable

            raise EngineUnavailable("fake model not ready")
        return ModelDescription(name="fake", version="7", engine="fake-engine", max_input_tokens=99)

    async def close(self) -> None:
        self.closed = True


__all__ = ["FakeEngine", "GatewayError"]
