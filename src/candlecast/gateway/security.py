"""API keys and rate limits.

Keys come from settings (``CANDLECAST_GATEWAY__API_KEYS='["key1","key2"]'``) and are compared in constant
time against every configured key. With none configured (the demo's default) every keyed request is refused
with a message saying so and how to set one, rather than "missing" or "invalid" key.

Rate limits are token buckets kept in memory, one per client address
and one per key: a bucket holds up to ``limit`` requests and refills at ``limit`` per minute. Each gateway
replica limits on its own.

Both answer a request with None (let it through) or the ``candlecast.errors.AccessDenied`` to answer with
(401/403/429, with ``WWW-Authenticate`` or ``Retry-After``): the caller raises it, or, in a plain ASGI layer,
answers with ``responses.error_response``.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Sequence

from candlecast.errors import AccessDenied

__all__ = ["NO_KEY_CONFIGURED", "ApiKeys", "RateLimiter", "is_loopback"]


NO_KEY_CONFIGURED = (
    "no API key is configured on this gateway, so the keyed routes are closed: set one with "
    """CANDLECAST_GATEWAY__API_KEYS='["your-key"]' (a JSON list) and restart, then send it in the X-API-Key """
    "header. The showcase route and the pages need no key, nor does MCP at /mcp unless gateway.mcp_requires_key is set"
)


class ApiKeys:
    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [key.encode() for key in keys if key]

    def check(self, presented: str | None) -> AccessDenied | None:
        """None when ``presented`` is a configured key, else the refusal to send."""
        if not self._keys:
            return AccessDenied(403, NO_KEY_CONFIGURED)
        if not presented:
            return AccessDenied(
                401,
                "missing API key: send it in the X-API-Key header",
                {"www-authenticate": 'ApiKey header="X-API-Key"'},
            )
        given = presented.encode()
        matched = False
        for key in self._keys:  # no early exit: time does not depend on which key matched
            matched |= hmac.compare_digest(given, key)
        if not matched:
            return AccessDenied(403, "invalid API key")
        return None


class RateLimiter:
    """Token buckets by name ("addr:1.2.3.4", "key:..."); ``limit_per_minute <= 0`` disables."""

    def __init__(
        self, limit_per_minute: int, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000
    ) -> None:
        self.capacity = float(limit_per_minute)
        self.rate = limit_per_minute / 60.0
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, updated_at)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, name: str) -> AccessDenied | None:
        """Spend one token of ``name``'s bucket: None, or a 429 saying when to retry when it is empty."""
        if not self.enabled:
            return None
        now = self.clock()
        tokens, updated = self._buckets.get(name, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - updated) * self.rate)
        if tokens < 1.0:
            self._buckets[name] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            detail = f"rate limit of {int(self.capacity)} requests per minute exceeded"
            return AccessDenied(429, detail, {"retry-after": str(wait)})
        if len(self._buckets) >= self.max_buckets and name not in self._buckets:
            self._forget_full_buckets(now)
        self._buckets[name] = (tokens - 1.0, now)
        return None

    def _forget_full_buckets(self, now: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        refill_s = self.capacity / self.rate
        self._buckets = {n: (t, u) for n, (t, u) in self._buckets.items() if now - u < refill_s}


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; False for wildcards (``0.0.0.0``, ``::``) and other names
    (the gateway does not import the inference service, which has the same check)."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything
