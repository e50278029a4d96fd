"""OpenTelemetry tracing, when configured: one server span per call, with method, status code and request id.

`otel_exporter` picks the exporter: "" (off, the default), "console" (spans printed to
stderr) or "otlp" (OTLP over gRPC to `otel_endpoint`; needs the `tracing` extra).
"""

from __future__ import annotations

from typing import Any

from reviewsum_server.config import GatewayConfig

SERVICE_NAME = "reviewsum-gateway"


def tracer_provider_for(config: GatewayConfig) -> Any | None:
    """A TracerProvider exporting as configured, or None when tracing is off."""
    if not config.otel_exporter:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    if config.otel_exporter == "console":
        exporter: Any = ConsoleSpanExporter()
    elif config.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=config.otel_endpoint or None, insecure=True)
    else:
        raise ValueError(f"otel_exporter must be '', 'console' or 'otlp', not {config.otel_exporter!r}")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
