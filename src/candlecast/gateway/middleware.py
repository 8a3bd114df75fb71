"""Plain ASGI layers in front of the FastAPI app, outermost first.

``ShowcaseFastPath`` (outermost) answers a showcase GET from a *fresh* cache entry without entering the other
layers or FastAPI at all: it parses the request as the route does (``params.parse_forecast``), builds its key
with the one key function (``reads.cache_key``), and sends the entry's pre-serialised body and headers (or 304),
plus the headers the layers it skips would have added (CORS's ``Vary: Origin``, the security headers), computed
once per entry. Anything else (a miss, a stale entry, a malformed request, a request with an ``Origin``, any
request while a public rate limit is set) goes through the full stack, whose FastAPI route is the one full
implementation; the fast path only skips routing, dependency resolution, response objects and header rewriting
for the common case (tests/gateway/test_exposure.py checks that both answer with the same headers).

``SecurityHeaders`` adds ``X-Content-Type-Options``, ``Referrer-Policy``, ``X-Frame-Options`` and a
Content-Security-Policy to every answer: for HTML, scripts and styles from the gateway itself only (the pages
carry no inline script; their data sits in ``application/json`` script elements, which are not run), inline
script allowed only on ``/docs`` and ``/redoc`` (Swagger UI and ReDoc start from one); for anything else
``default-src 'none'``. Every policy says ``frame-ancestors 'none'``.

Then Starlette's ``CORSMiddleware`` (``gateway.cors_allow_origins``), then ``PublicRateLimit``, which limits
showcase and page requests per client address when ``gateway.public_rate_limit_per_minute`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from candlecast.errors import InputError
from candlecast.gateway.cache import Key, RawHeaders, ResponseCache
from candlecast.gateway.metrics import GatewayMetrics, route_family
from candlecast.gateway.params import parse_forecast
from candlecast.gateway.reads import SHOWCASE, cache_key
from candlecast.gateway.responses import error_response, etag_matches
from candlecast.gateway.routes.showcase import SHOWCASE_PREFIX
from candlecast.gateway.security import RateLimiter

__all__ = ["PublicRateLimit", "SecurityHeaders", "ShowcaseFastPath", "with_security_headers"]

ASGIApp = Any
_OUTER_HEADERS = "fast-path headers"  # the key of an entry's final headers in its ``derived`` memo


class ShowcaseFastPath:
    """Outermost: a fresh hit is answered with the headers the layers it skips would have added (CORS's ``Vary``
    and the security headers, memoised on the entry); a request those layers would treat differently (one with
    an ``Origin``, or any request while a public rate limit is set) goes through them."""

    def __init__(
        self,
        app: ASGIApp,
        cache: ResponseCache,
        metrics: GatewayMetrics,
        default_model: str,
        cors: bool = False,
        rate_limited: bool = False,
    ) -> None:
        self.app = app
        self.cache = cache
        self.metrics = metrics
        self.default_model = default_model
        self.cors = cors
        self.rate_limited = rate_limited
        self._prefix_len = len(SHOWCASE_PREFIX)

    def _outer_headers(self, headers: RawHeaders, path: str) -> RawHeaders:
        """What CORS (for a request without ``Origin``: ``Vary: Origin``) and ``SecurityHeaders`` add."""
        if self.cors:
            vary = [value.decode("latin-1") for name, value in headers if name == b"vary"]
            headers = [(n, v) for n, v in headers if n != b"vary"]
            headers.append((b"vary", ", ".join([*vary, "Origin"]).encode("latin-1")))
        return with_security_headers(headers, path)

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
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(SHOWCASE_PREFIX)
            or self.rate_limited
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"origin":  # CORS answers it: the full stack
                await self.app(scope, receive, send)
                return
        key = self._key(scope)
        entry = self.cache.fresh(key) if key is not None else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        self.metrics.cache_hit.inc()
        outer = entry.derived.get(_OUTER_HEADERS)
        if outer is None:  # once per entry
            path = scope["path"]
            outer = entry.derived[_OUTER_HEADERS] = (
                self._outer_headers(entry.headers, path),
                self._outer_headers(entry.not_modified_headers, path),
            )
        if if_none_match is not None and etag_matches(if_none_match, entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": outer[1]})
            await send({"type": "http.response.body", "body": b""})
            self.metrics.showcase_not_modified.inc()
        else:
            await send({"type": "http.response.start", "status": entry.status, "headers": outer[0]})
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
        path = scope["path"]

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_security_headers(message.get("headers", ()), path)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]], path: str) -> RawHeaders:
    """``headers`` and the security headers of an answer to ``path`` (the CSP chosen by its content type)."""
    headers = list(headers)
    html = any(name == b"content-type" and value.startswith(b"text/html") for name, value in headers)
    csp = (_DOCS_CSP if path in ("/docs", "/redoc") else _PAGE_CSP) if html else _API_CSP
    return [*headers, *_COMMON, (b"content-security-policy", csp.encode())]
