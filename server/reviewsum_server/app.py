"""Build, run and gracefully stop the gateway."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from reviewsum.v1 import reviewsum_pb2 as pb
from reviewsum.v1 import reviewsum_pb2_grpc as pb_grpc

from reviewsum_server import config as config_module
from reviewsum_server import logs
from reviewsum_server.auth import ApiKeyAuthenticator, load_api_keys
from reviewsum_server.config import GatewayConfig
from reviewsum_server.engine import SummarizationEngine
from reviewsum_server.health import ReadinessWatcher
from reviewsum_server.interceptors import ApiKeyInterceptor, MetricsInterceptor
from reviewsum_server.metrics import GatewayMetrics
from reviewsum_server.servicer import ReviewSummarizerServicer
from reviewsum_server.tracing import tracer_provider_for
from reviewsum_server.triton_engine import TritonEngine

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    watcher: ReadinessWatcher
    servicer: ReviewSummarizerServicer
    engine: SummarizationEngine
    metrics: GatewayMetrics
    tracer_provider: Any | None = None

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first, then refuse new calls and let in-flight ones finish within `grace_s`."""
        await self.watcher.stop()
        await self.server.stop(grace_s)
        await self.engine.close()
        self.metrics.shutdown()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()  # flushes spans still batched


def server_credentials(config: GatewayConfig) -> grpc.ServerCredentials:
    """TLS from PEM files; with a client CA, clients must present a certificate it signed (mutual TLS)."""
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def interceptors(
    config: GatewayConfig, metrics: GatewayMetrics, tracer: Any | None
) -> list[grpc.aio.ServerInterceptor]:
    """Metrics (and tracing) outermost, so rejected calls are counted too."""
    chain: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(metrics, tracer)]
    if config.require_api_key:
        keys = load_api_keys(config)
        chain.append(ApiKeyInterceptor(ApiKeyAuthenticator(keys, config.rate_limit_per_key, config.rate_limit_burst)))
    return chain


def bind(server: grpc.aio.Server, config: GatewayConfig) -> int:
    if config.tls_enabled:
        port = server.add_secure_port(config.listen_address, server_credentials(config))
    else:
        port = server.add_insecure_port(config.listen_address)
    if port == 0:
        raise OSError(f"could not bind {config.listen_address}")
    return port


async def create_server(
    config: GatewayConfig, engine: SummarizationEngine, tracer_provider: Any | None = None
) -> Gateway:
    """A started gateway; with `config.port == 0` the port is picked by the OS and returned.

    Tracing uses `tracer_provider` when given (tests pass one with an in-memory exporter), else the configured one.
    """
    metrics = GatewayMetrics.create()
    tracer_provider = tracer_provider or tracer_provider_for(config)
    tracer = tracer_provider.get_tracer("reviewsum_server") if tracer_provider is not None else None
    server = grpc.aio.server(interceptors=interceptors(config, metrics, tracer))
    servicer = ReviewSummarizerServicer(config, engine, metrics)
    admission = getattr(engine, "admission", None)  # the Triton engine's load shedder; fakes have none
    if admission is not None:
        metrics.watch_admission(admission)
    pb_grpc.add_ReviewSummarizerServicer_to_server(servicer, server)
    watcher = ReadinessWatcher(engine, config.readiness_poll_s)
    health_pb2_grpc.add_HealthServicer_to_server(watcher.servicer, server)
    service_names = (
        pb.DESCRIPTOR.services_by_name["ReviewSummarizer"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(service_names, server)
    port = bind(server, config)
    if config.metrics_port >= 0:
        metrics.serve(config.metrics_port, config.host)
    await server.start()
    await watcher.start()
    return Gateway(server, port, watcher, servicer, engine, metrics, tracer_provider)


async def serve(config: GatewayConfig) -> None:
    engine = TritonEngine.from_config(config)
    gateway = await create_server(config, engine)
    log.info(
        "gateway listening on %s:%d (Triton at %s, metrics port %s, TLS %s, API keys %s)",
        config.host,
        gateway.port,
        config.triton_url,
        gateway.metrics.port,
        "on" if config.tls_enabled else "off",
        "required" if config.require_api_key else "off",
    )
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
