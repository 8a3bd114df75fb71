"""Plain ASGI layers in front of the FastAPI app.

``ShowcaseFastPath`` answers a showcase GET from a *fresh* cache entry without entering FastAPI at all:
it parses the request as the route does (``params.parse_forecast``), builds its key with the one key function
(``reads.cache_key``), and sends the entry's pre-serialised body and headers (or 304). Anything else (a miss,
a stale entry, a malformed request) falls through to the FastAPI route, which is the one full implementation;
the fast path only skips routing, dependency resolution and response objects for the common case.

``PublicRateLimit`` limits showcase and page requests per client address when
``gateway.public_rate_limit_per_minute`` is set.

``SecurityHeaders`` (outermost) adds ``X-Content-Type-Options``, ``Referrer-Policy``, ``X-Frame-Options`` and a
Content-Security-Policy to every answer: for HTML, scripts and styles from the gateway itself only (the pages
carry no inline script; their data sits in ``application/json`` script elements, which are not run), inline
script allowed only on ``/docs`` and ``/redoc`` (Swagger UI and ReDoc start from one); for anything else
``default-src 'none'``. Every policy says ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from candlecast.errors import InputError
from candlecast.gateway.cache import Key, ResponseCache
from candlecast.gateway.metrics import GatewayMetrics, route_family
from candlecast.gateway.params import parse_forecast
from candlecast.gateway.reads import SHOWCASE, cache_key
from candlecast.gateway.responses import error_response, etag_matches
from candlecast.gateway.routes.showcase import SHOWCASE_PREFIX
from candlecast.gateway.security import RateLimiter

__all__ = ["PublicRateLimit", "SecurityHeaders", "ShowcaseFastPath"]

ASGIApp = Any


class ShowcaseFastPath:
    def __init__(self, app: ASGIApp, cache: ResponseCache, metrics: GatewayMetrics, default_model: str) -> None:
        self.app = app
        self.cache = cache
        self.metrics = metrics
        self.default_model = default_model
        self._prefix_len = len(SHOWCASE_PREFIX)

    def _key(self, scope: dict[str, Any]) -> Key | None:
        """The route's cache key for this request; None when it is malformed (the route answers 422)."""
        model: str | None = None
        timeframe: str | None = None
        query = scope["query_string"]
        if query:
            # same parsing as Starlette's QueryParams: the last value wins
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name == "model_name":
                    model = value
                elif name == "timeframe":
                    timeframe = value
        symbol = scope["path"][self._prefix_len :]
        try:
            params = parse_forecast(symbol, model, timeframe, self.default_model)
        except InputError:
            return None
        return cache_key(SHOWCASE, *params)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith(SHOWCASE_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        key = self._key(scope)
        entry = self.cache.fresh(key) if key is not None else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        self.metrics.cache_hit.inc()
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
                break
        if if_none_match is not None and etag_matches(if_none_match, entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": entry.not_modified_headers})
            await send({"type": "http.response.body", "body": b""})
            self.metrics.showcase_not_modified.inc()
        else:
            await send({"type": "http.response.start", "status": entry.status, "headers": entry.headers})
            await send({"type": "http.response.body", "body": entry.body})
            if entry.status == 200:
                self.metrics.showcase_ok.inc()
            else:
                self.metrics.requests.labels("showcase", str(entry.status)).inc()
        self.metrics.showcase_latency.observe(time.perf_counter() - started)


class PublicRateLimit:
    """429 for showcase and page requests beyond the per-address limit (``/api`` and ``/mcp`` have their own)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, metrics: GatewayMetrics) -> None:
        self.app = app
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            family = route_family(scope["path"])
            if family in ("showcase", "page"):
                client = scope.get("client")
                denied = self.limiter.take("addr:" + (client[0] if client else "unknown"))
                if denied is not None:
                    self.metrics.requests.labels(family, str(denied.status)).inc()
                    await error_response(denied)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


_PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_API_CSP = "default-src 'none'; frame-ancestors 'none'"
_COMMON: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Security headers on every HTTP answer (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] in ("/docs", "/redoc")

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                html = any(name == b"content-type" and value.startswith(b"text/html") for name, value in headers)
                csp = (_DOCS_CSP if docs else _PAGE_CSP) if html else _API_CSP
                message = {**message, "headers": [*headers, *_COMMON, (b"content-security-policy", csp.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
