"""Prometheus metrics of one gateway, served over HTTP on their own port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from reviewsum_server.admission import Admission

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

    def watch_admission(self, admission: Admission) -> None:
        self.registry.register(AdmissionCollector(admission))

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


class AdmissionCollector(Collector):
    """Reads the admission state at scrape time, so the hot path updates no metric objects."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[Metric]:
        stats = self._admission.stats()
        yield GaugeMetricFamily("reviewsum_triton_inflight", "Triton requests in flight", value=stats.in_flight)
        yield GaugeMetricFamily("reviewsum_triton_waiting", "Reviews waiting for a Triton slot", value=stats.waiting)
        refused = CounterMetricFamily(
            "reviewsum_admission_refused", "Triton requests refused by the load shedder, by reason", labels=["reason"]
        )
        refused.add_metric(["waiting_line_full"], stats.refused_line_full)
        refused.add_metric(["wait_budget_spent"], stats.refused_wait_budget)
        refused.add_metric(["recent_calls_too_slow"], stats.refused_too_slow)
        yield refused
