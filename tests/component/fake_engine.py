"""An in-memory engine for component tests of the gateway (the layer above the engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from reviewsum_server.domain import (
    EngineUnavailable,
    GenerationParams,
    ModelDescription,
    StreamChunk,
    SummaryResult,
)


def fake_summary(text: str, params: GenerationParams) -> SummaryResult:
    return SummaryResult(
        summary=f"摘要:{text[: params.max_summary_tokens]}",
        input_tokens=len(text) + 1,
        summary_tokens=min(len(text), params.max_summary_tokens),
        finish_reason="length" if len(text) > params.max_summary_tokens else "stop",
    )


@dataclass
class FakeEngine:
    ready: bool = True
    delay_s: float = 0.0
    error: BaseException | None = None
    fail_texts: set[str] = field(default_factory=set)  # these texts raise `error`; others succeed
    calls: list[tuple[list[str], GenerationParams, float | None, str]] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False
    concurrent: int = 0
    max_concurrent: int = 0

    async def _wait(self) -> None:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.concurrent -= 1

    def _raise_if_failing(self, texts: Sequence[str]) -> None:
        if self.error is not None and (not self.fail_texts or self.fail_texts & set(texts)):
            raise self.error

    async def summarize(
        self, texts: Sequence[str], params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> list[SummaryResult]:
        self.calls.append((list(texts), params, timeout_s, request_id))
        await self._wait()
        self._raise_if_failing(texts)
        return [fake_summary(text, params) for text in texts]

    async def stream(
        self, text: str, params: GenerationParams, *, timeout_s: float | None, request_id: str
    ) -> AsyncIterator[StreamChunk]:
        """The fake summary one character at a time, `delay_s` apart."""
        self.calls.append(([text], params, timeout_s, request_id))
        self._raise_if_failing([text])
        result = fake_summary(text, params)
        try:
            for char in result.summary:
                await self._wait()
                yield StreamChunk(char)
        except GeneratorExit:
            self.cancelled += 1
            raise
        yield StreamChunk("", final=result)

    async def is_ready(self) -> bool:
        return self.ready

    async def describe(self) -> ModelDescription:
        if not self.ready:
            raise EngineUnavailable("fake model not ready")
        return ModelDescription(name="fake", version="7", engine="fake-engine", max_input_tokens=99)

    async def close(self) -> None:
        self.closed = True
