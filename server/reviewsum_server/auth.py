"""API keys: `authorization: Bearer KEY`, compared in constant time, each key rate limited by a token bucket."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reviewsum_server.config import GatewayConfig


class AuthError(Exception):
    pass


def load_api_keys(config: GatewayConfig) -> list[str]:
    keys = [k.strip() for k in config.api_keys.split(",") if k.strip()]
    if config.api_keys_file:
        for line in Path(config.api_keys_file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    if config.require_api_key and not keys:
        raise ValueError("require_api_key is on but no API keys were given (api_keys_file or api_keys)")
    return keys


def key_fingerprint(key: str) -> str:
    """What logs and metrics may show of a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float | None = None) -> float:
        """0.0 when a request may go now, else the seconds until one may."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


class ApiKeyAuthenticator:
    def __init__(self, keys: Iterable[str], rate_per_s: float, burst: int) -> None:
        self._keys = [k.encode() for k in keys]
        self._buckets = {key: TokenBucket(rate_per_s, burst) for key in self._keys}

    def authenticate(self, authorization: str | None) -> bytes:
        """The matching key, or AuthError. Every known key is compared, so timing reveals nothing."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError("missing 'authorization: Bearer KEY' metadata")
        offered = authorization.removeprefix("Bearer ").strip().encode()
        match: bytes | None = None
        for key in self._keys:
            if hmac.compare_digest(offered, key):
                match = key
        if match is None:
            raise AuthError("unknown API key")
        return match

    def wait_for(self, key: bytes) -> float:
        return self._buckets[key].take()
