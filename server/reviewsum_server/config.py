"""The gateway's one configuration object, built from flags and REVIEWSUM_* environment variables.

Precedence: command-line flag, then environment variable, then default. No other
module reads the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

ENV_PREFIX = "REVIEWSUM_"


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = 50051
    triton_url: str = "localhost:8001"
    model_name: str = "summarizer"
    model_version: str = ""
    stream_model_name: str = "summarizer_stream"
    max_reviews_per_request: int = 64
    max_reviews_per_product: int = 500
    bulk_window: int = 32
    max_review_chars: int = 4000
    max_review_tokens: int = 1024
    tokenizer_file: str = ""
    max_id_chars: int = 128
    max_beam_size: int = 8
    max_summary_tokens: int = 128
    default_timeout_s: float = 30.0
    max_inflight_requests: int = 256
    triton_max_inflight: int = 64
    triton_max_waiting: int = 192
    triton_max_wait_s: float = 3.0
    readiness_poll_s: float = 1.0
    shutdown_grace_s: float = 10.0
    log_level: str = "INFO"
    metrics_port: int = 9095
    require_api_key: bool = False
    api_keys_file: str = ""
    api_keys: str = ""
    rate_limit_per_key: float = 50.0
    rate_limit_burst: int = 100
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    otel_exporter: str = ""
    otel_endpoint: str = ""

    @property
    def listen_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file and self.tls_key_file)


HELP = {
    "host": "interface the gateway listens on",
    "port": "gRPC port of the gateway (0 picks a free one)",
    "triton_url": "Triton gRPC endpoint, host:port",
    "model_name": "Triton model that writes summaries",
    "model_version": "Triton model version ('' = the latest ready)",
    "stream_model_name": "decoupled Triton model that streams summaries as they are generated",
    "max_reviews_per_request": "most reviews in one SummarizeReviews call",
    "max_reviews_per_product": "most reviews in one SummarizeProduct call",
    "bulk_window": "reviews of one StreamSummarizeReviews stream in progress at once; reading waits beyond it",
    "max_review_chars": "longest review text, in characters",
    "max_review_tokens": "longest review text, in model tokens (checked when tokenizer_file is set)",
    "tokenizer_file": "the model's tokenizer.json, to enforce max_review_tokens before any work reaches Triton",
    "max_id_chars": "longest review id or request_id, in characters",
    "max_beam_size": "largest beam_size a caller may ask for",
    "max_summary_tokens": "largest max_summary_tokens a caller may ask for",
    "default_timeout_s": "deadline for calls that arrive without one, in seconds",
    "max_inflight_requests": "calls served at once; more are rejected with RESOURCE_EXHAUSTED",
    "triton_max_inflight": "Triton requests (one per review) in flight at once across all calls",
    "triton_max_waiting": "reviews that may wait for a Triton slot; more are refused with RESOURCE_EXHAUSTED",
    "triton_max_wait_s": "seconds a review may wait for a Triton slot (at most half its deadline), then refused",
    "readiness_poll_s": "how often Triton model readiness is polled for health, in seconds",
    "shutdown_grace_s": "on SIGTERM, how long in-flight calls may take to finish, in seconds",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "metrics_port": "Prometheus metrics HTTP port (0 picks a free one, -1 turns metrics off)",
    "require_api_key": "require `authorization: Bearer KEY` on API calls (health and reflection stay open)",
    "api_keys_file": "file with one API key per line (# comments allowed)",
    "api_keys": "comma-separated API keys, added to those of --api-keys-file",
    "rate_limit_per_key": "requests per second each API key may make (token bucket)",
    "rate_limit_burst": "requests an API key may make at once before the rate limit applies",
    "tls_cert_file": "PEM certificate chain of the gateway; TLS is on when it and the key are given",
    "tls_key_file": "PEM private key of the gateway",
    "tls_client_ca_file": "PEM CA that client certificates must chain to: turns on mutual TLS",
    "otel_exporter": "OpenTelemetry tracing: '' (off), 'console' or 'otlp'",
    "otel_endpoint": "OTLP gRPC collector address for otel_exporter=otlp, e.g. localhost:4317",
}


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


TRUE_WORDS = {"1", "true", "yes", "on"}


def parse_bool(text: str) -> bool:
    return text.strip().lower() in TRUE_WORDS


def convert(default: object, text: str) -> object:
    return parse_bool(text) if isinstance(default, bool) else type(default)(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One `--kebab-case` flag per field; defaults stay None so the environment can fill in."""
    for f in fields(GatewayConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{HELP[f.name]} (env {env_name(f.name)}, default {f.default!r})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=None, help=help_text)


def from_sources(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(GatewayConfig):
        flag_value = getattr(args, f.name, None) if args is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
        elif env_name(f.name) in environ:
            values[f.name] = convert(f.default, environ[env_name(f.name)])
    return GatewayConfig(**values)


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    parser = argparse.ArgumentParser(prog="reviewsum-gateway", description="ReviewSum gRPC gateway")
    add_arguments(parser)
    return from_sources(parser.parse_args(argv), environ)


def markdown_rows() -> list[str]:
    """The README's configuration table rows (`python -m reviewsum_server.config README.md` rewrites it)."""
    return [
        f"| `--{f.name.replace('_', '-')}` | `{env_name(f.name)}` | `{f.default}` | {HELP[f.name]} |"
        for f in fields(GatewayConfig)
    ]


def update_readme_table(readme: str) -> str:
    lines = readme.split("\n")
    start = lines.index("| flag | environment | default | meaning |") + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = markdown_rows()
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    # `python -m reviewsum_server.config README.md` rewrites the table in place.
    path = Path(sys.argv[1])
    path.write_text(update_readme_table(path.read_text(encoding="utf-8")), encoding="utf-8")
