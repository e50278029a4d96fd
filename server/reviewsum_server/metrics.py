"""Prometheus metrics of one gateway, served over HTTP on their own port."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    inflight: Gauge
    reviews_per_request: Histogram
    summary_tokens: Histogram
    port: int | None = None

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "reviewsum_requests", "Finished calls by method and status code", ["method", "code"], registry=registry
            ),
            latency=Histogram(
                "reviewsum_request_latency_seconds",
                "Call latency by method",
                ["method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            inflight=Gauge("reviewsum_inflight_requests", "Calls in progress", registry=registry),
            reviews_per_request=Histogram(
                "reviewsum_reviews_per_request",
                "Reviews per call: the batch sizes the gateway sees",
                buckets=SIZE_BUCKETS,
                registry=registry,
            ),
            summary_tokens=Histogram(
                "reviewsum_summary_tokens",
                "Tokens generated per summary",
                buckets=SIZE_BUCKETS,
                registry=registry,
            ),
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(server.server_port)
        self._server = server
        return self.port

    def shutdown(self) -> None:
        """Stops the HTTP server without waiting for its poll interval (up to 0.5 s) to pass."""
        server = getattr(self, "_server", None)
        if server is not None:

            def close() -> None:
                server.shutdown()
                server.server_close()

            threading.Thread(target=close, name="metrics-shutdown", daemon=True).start()
