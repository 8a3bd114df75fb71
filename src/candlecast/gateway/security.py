"""API keys and rate limits.

Keys come from settings (``CANDLECAST_GATEWAY__API_KEYS='["key1","key2"]'``) and are compared in constant
time against every configured key. With none configured (the demo's default) every keyed request is refused
with a message saying so and how to set one, rather than "missing" or "invalid" key.

Rate limits are token buckets, one per client address and one per key: a bucket holds up to ``limit`` requests
and refills at ``limit`` per minute. ``RateLimiter`` keeps them in memory (each process on its own);
``SharedRateLimiter`` keeps them in Redis (``gateway.rate_limit_redis_url``), so every replica spends from the same
buckets (one Lua script per request: read, refill by Redis's clock, spend). When Redis does not answer within
``timeout_s`` the request is limited by the process's own buckets instead, and Redis is tried again
``retry_s`` later: Redis being down never fails a request (``make_limiter``).

Both answer a request with None (let it through) or the ``candlecast.errors.AccessDenied`` to answer with
(401/403/429, with ``WWW-Authenticate`` or ``Retry-After``): the caller raises it, or, in a plain ASGI layer,
answers with ``responses.error_response``.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from candlecast.errors import AccessDenied

__all__ = ["NO_KEY_CONFIGURED", "ApiKeys", "RateLimiter", "SharedRateLimiter", "make_limiter"]

log = logging.getLogger(__name__)


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
            return self._refusal(tokens)
        if len(self._buckets) >= self.max_buckets and name not in self._buckets:
            self._forget_full_buckets(now)
        self._buckets[name] = (tokens - 1.0, now)
        return None

    def _refusal(self, tokens: float) -> AccessDenied:
        wait = math.ceil((1.0 - tokens) / self.rate)
        detail = f"rate limit of {int(self.capacity)} requests per minute exceeded"
        return AccessDenied(429, detail, {"retry-after": str(wait)})

    def _forget_full_buckets(self, now: float) -> None:
        """Drop buckets that have refilled completely: forgetting them changes nothing."""
        refill_s = self.capacity / self.rate
        self._buckets = {n: (t, u) for n, (t, u) in self._buckets.items() if now - u < refill_s}


# KEYS[1] the bucket; ARGV capacity, refill per second. Returns {1 spent | 0 refused, tokens left as text}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stored = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(stored[1]) or capacity
local ts = tonumber(stored[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local spent = 0
if tokens >= 1 then
  tokens = tokens - 1
  spent = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {spent, tostring(tokens)}
"""


class SharedRateLimiter(RateLimiter):
    """Token buckets in Redis, shared by every gateway process that uses the same ``url`` and ``prefix``; the
    in-memory buckets of ``RateLimiter`` while Redis does not answer (checked again every ``retry_s``)."""

    def __init__(
        self,
        limit_per_minute: int,
        url: str,
        prefix: str = "candlecast:ratelimit:",
        timeout_s: float = 0.05,
        retry_s: float = 5.0,
    ) -> None:
        super().__init__(limit_per_minute)
        import redis  # only a gateway configured with Redis needs it

        self.prefix = f"{prefix}{limit_per_minute}:"
        self.retry_s = retry_s
        self._client: Any = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script: Any = self._client.register_script(_TAKE)
        self._redis_down_until = 0.0  # monotonic
        self.shared = True  # False while the fallback is in use

    def take(self, name: str) -> AccessDenied | None:
        if not self.enabled:
            return None
        if time.monotonic() >= self._redis_down_until:
            try:
                spent, tokens = self._script(keys=[self.prefix + name], args=[self.capacity, self.rate])
            except Exception as exc:  # any Redis failure: limit in this process, never fail the request
                self._redis_down_until = time.monotonic() + self.retry_s
                if self.shared:
                    log.warning("rate limits: Redis unreachable (%s); limiting per process", type(exc).__name__)
                self.shared = False
            else:
                if not self.shared:
                    log.info("rate limits: Redis answers again; limits are shared")
                self.shared = True
                return None if int(spent) else self._refusal(float(tokens))
        return super().take(name)


def make_limiter(limit_per_minute: int, redis_url: str | None, prefix: str = "candlecast:ratelimit:") -> RateLimiter:
    """A shared limiter when ``redis_url`` is set (and the limit is on), else a per-process one."""
    if redis_url and limit_per_minute > 0:
        return SharedRateLimiter(limit_per_minute, redis_url, prefix)
    return RateLimiter(limit_per_minute)
