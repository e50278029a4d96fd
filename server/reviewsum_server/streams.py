"""StreamSummarizeReviews: bulk summarization over one bidirectional stream, with a bounded window.

The reader takes a new item only when a slot of the window is free, so a fast
producer is slowed by gRPC flow control instead of filling the gateway's memory.
Results go out as they finish, each with its input id; a bad item gets an error
result and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from reviewsum.v1 import reviewsum_pb2 as pb

from reviewsum_server.config import GatewayConfig
from reviewsum_server.domain import (
    EngineFailure,
    GatewayError,
    GenerationParams,
    InvalidRequest,
    SummaryResult,
    Violation,
)
from reviewsum_server.rpc_errors import GENERIC_INTERNAL_MESSAGE, code_for
from reviewsum_server.validation import TokenCounter, validate_bulk_item

log = logging.getLogger(__name__)
Summarize = Callable[[str, GenerationParams], Awaitable[SummaryResult]]
ToPb = Callable[[str, SummaryResult], pb.ReviewSummary]
_DONE = object()


def item_error(item_id: str, error: GatewayError) -> pb.StreamSummarizeReviewsResponse:
    code = code_for(error)
    message = GENERIC_INTERNAL_MESSAGE if code == grpc.StatusCode.INTERNAL else error.message
    field = error.violations[0].field if isinstance(error, InvalidRequest) and error.violations else ""
    if isinstance(error, InvalidRequest):
        message = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    return pb.StreamSummarizeReviewsResponse(
        id=item_id, error=pb.ItemError(code=code.name, message=message, field=field)
    )


class BulkStream:
    def __init__(
        self, config: GatewayConfig, summarize: Summarize, to_pb: ToPb, count_tokens: TokenCounter | None = None
    ) -> None:
        self._config = config
        self._count_tokens = count_tokens
        self._summarize = summarize
        self._to_pb = to_pb
        self._window = asyncio.Semaphore(config.bulk_window)
        self._results: asyncio.Queue[object] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_ids: set[str] = set()
        self.items = 0

    async def run(self, requests: AsyncIterator[pb.StreamSummarizeReviewsRequest]) -> AsyncIterator[object]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                result = await self._results.get()
                if result is _DONE:
                    break
                yield result
            await reader  # surfaces a failure of the reader
        finally:
            reader.cancel()
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(reader, *self._tasks, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[pb.StreamSummarizeReviewsRequest]) -> None:
        try:
            async for item in requests:
                await self._window.acquire()
                self.items += 1
                task = asyncio.create_task(self._one(item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            # Wait for the window to drain: every slot back means every item answered.
            for _ in range(self._config.bulk_window):
                await self._window.acquire()
        finally:
            self._results.put_nowait(_DONE)

    async def _one(self, item: pb.StreamSummarizeReviewsRequest) -> None:
        try:
            self._results.put_nowait(await self._answer(item))
        finally:
            self._window.release()

    async def _answer(self, item: pb.StreamSummarizeReviewsRequest) -> pb.StreamSummarizeReviewsResponse:
        try:
            params = validate_bulk_item(item, self._config, self._count_tokens)
            if item.id in self._seen_ids:
                raise InvalidRequest([Violation("id", "repeats an earlier id of this stream")])
            self._seen_ids.add(item.id)
            result = await self._summarize(item.text, params)
        except GatewayError as error:
            return item_error(item.id, error)
        except Exception:
            log.exception("bulk item %s failed", item.id)
            return item_error(item.id, EngineFailure("unexpected error"))
        return pb.StreamSummarizeReviewsResponse(id=item.id, summary=self._to_pb(item.id, result))
