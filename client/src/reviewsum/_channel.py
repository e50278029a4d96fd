"""Channel construction shared by the sync and async clients."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

SERVICE_NAME = "reviewsum.v1.ReviewSummarizer"
DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's own retries: only UNAVAILABLE and RESOURCE_EXHAUSTED, exponential backoff with jitter.

    The server's `grpc-retry-pushback-ms` trailer, sent with RESOURCE_EXHAUSTED, overrides the backoff.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    backoff_multiplier: float = 2.0

    def service_config(self) -> str:
        if self.max_attempts <= 1:
            return json.dumps({"methodConfig": [{"name": [{"service": SERVICE_NAME}]}]})
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_s}s",
            "maxBackoff": f"{self.max_backoff_s}s",
            "backoffMultiplier": self.backoff_multiplier,
            "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
        }
        return json.dumps({"methodConfig": [{"name": [{"service": SERVICE_NAME}], "retryPolicy": policy}]})


NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class TlsConfig:
    """Server verification with `root_certificates`; mutual TLS when a client cert and key are given."""

    root_certificates: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None
    server_name_override: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.root_certificates),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_certificate),
        )


def channel_options(retry: RetryPolicy, tls: TlsConfig | None) -> list[tuple[str, object]]:
    options: list[tuple[str, object]] = [
        ("grpc.service_config", retry.service_config()),
        ("grpc.enable_retries", int(retry.max_attempts > 1)),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    if tls is not None and tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    return options


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
