"""grpc.health.v1 driven by Triton: SERVING only while the model is ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from grpc_health.v1 import health, health_pb2

from reviewsum_server.engine import SummarizationEngine

log = logging.getLogger(__name__)
SERVICE_NAME = "reviewsum.v1.ReviewSummarizer"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessWatcher:
    """Polls the engine and mirrors its readiness into the health service (overall and per service)."""

    def __init__(self, engine: SummarizationEngine, poll_s: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._engine = engine
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.serving = False
        self.shutting_down = False

    async def start(self) -> None:
        await self._publish(False)
        self._task = asyncio.create_task(self._run(), name="readiness-watcher")

    async def _run(self) -> None:
        while not self.shutting_down:
            ready = await self._engine.is_ready()
            if ready != self.serving and not self.shutting_down:
                log.info("model %s", "ready: SERVING" if ready else "not ready: NOT_SERVING")
                await self._publish(ready)
            await asyncio.sleep(self._poll_s)

    async def _publish(self, serving: bool) -> None:
        self.serving = serving
        status = SERVING if serving else NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.servicer.set(service, status)

    async def stop(self) -> None:
        """Report NOT_SERVING for good: the gateway is shutting down."""
        self.shutting_down = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._publish(False)
