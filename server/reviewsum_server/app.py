"""Build, run and gracefully stop the gateway."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc

from reviewsum_server import config as config_module
from reviewsum_server import logs
from reviewsum_server.config import GatewayConfig
from reviewsum_server.engine import SummarizationEngine
from reviewsum_server.health import ReadinessWatcher
from reviewsum_server.servicer import ReviewSummarizerServicer
from reviewsum_server.triton_engine import TritonEngine

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    watcher: ReadinessWatcher
    servicer: ReviewSummarizerServicer
    engine: SummarizationEngine

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first, then refuse new calls and let in-flight ones finish within `grace_s`."""
        await self.watcher.stop()
        await self.server.stop(grace_s)
        await self.engine.close()


async def create_server(config: GatewayConfig, engine: SummarizationEngine) -> Gateway:
    """A started gateway; with `config.port == 0` the port is picked by the OS and returned."""
    server = grpc.aio.server()
    servicer = ReviewSummarizerServicer(config, engine)
    pb_grpc.add_ReviewSummarizerServicer_to_server(servicer, server)
    watcher = ReadinessWatcher(engine, config.readiness_poll_s)
    health_pb2_grpc.add_HealthServicer_to_server(watcher.servicer, server)
    service_names = (
        pb.DESCRIPTOR.services_by_name["ReviewSummarizer"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(service_names, server)
    port = server.add_insecure_port(config.listen_address)
    if port == 0:
        raise OSError(f"could not bind {config.listen_address}")
    await server.start()
    await watcher.start()
    return Gateway(server, port, watcher, servicer, engine)


async def serve(config: GatewayConfig) -> None:
    engine = TritonEngine(config.triton_url, config.model_name, config.model_version)
    gateway = await create_server(config, engine)
    log.info("gateway listening on %s:%d (Triton at %s)", config.host, gateway.port, config.triton_url)
    print(f"reviewsum gateway listening on {config.host}:{gateway.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: NOT_SERVING, %.1f s grace for calls in flight", config.shutdown_grace_s)
    await gateway.stop(config.shutdown_grace_s)
    log.info("gateway stopped")


def main(argv: Sequence[str] | None = None) -> None:
    config = config_module.parse(argv)
    logs.configure(config.log_level)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
