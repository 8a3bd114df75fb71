"""HTTP routes: the public showcase, the keyed ``/api/v1`` reads, ``/health`` and ``/metrics``.

Every JSON answer comes from ``GatewayData`` already serialised, with an ETag; a matching
``If-None-Match`` gets 304. Showcase answers may be cached by browsers and CDNs (``public``), keyed
answers only by the client (``private``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from candlecast.gateway.data import GatewayData, Served
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.security import ApiKeys, Denied, RateLimiter

__all__ = ["Refused", "api_router", "etag_matches", "public_router", "refused_response", "served_response"]

SHOWCASE_PREFIX = "/showcase/ml-prediction/"


class Refused(Exception):
    """Raised by the key/rate-limit guard; turned into 401/403/429 by the app's handler."""

    def __init__(self, denied: Denied) -> None:
        super().__init__(denied.detail)
        self.denied = denied


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison, as If-None-Match asks (RFC 9110 13.1.2)."""
    if if_none_match.strip() == b"*":
        return True
    bare = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == bare for tag in if_none_match.split(b","))


def served_response(request: Request, served: Served, private: bool = False) -> Response:
    etag = served.etag
    cache_control = served.cache_control
    if private:
        cache_control = cache_control.replace(b"public", b"private")
    headers = {"etag": etag.decode(), "cache-control": cache_control.decode()}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match.encode(), etag):
        return Response(status_code=304, headers=headers)
    return Response(served.body, status_code=served.status, media_type="application/json", headers=headers)


def public_router(data: GatewayData, metrics: GatewayMetrics) -> APIRouter:
    router = APIRouter()

    @router.get(SHOWCASE_PREFIX + "{symbol}", tags=["showcase"])
    async def showcase(
        request: Request,
        symbol: str,
        model_name: str | None = Query(None, description="default: the gateway's default model"),
        timeframe: str | None = Query(None, description="1h or 1d; default: the gateway's default"),
    ) -> Response:
        """The newest stored forecast of a symbol: p10/p50/p90 per target timestamp (public, no key)."""
        return served_response(request, await data.showcase(symbol, model_name, timeframe))

    @router.get("/health", tags=["operations"])
    async def health() -> JSONResponse:
        """Database and LISTEN state, cache size, last job runs, age of the newest forecast per timeframe.

        Always 200 while the process serves: with the database down the gateway still answers from its
        cache, so ``status`` says "degraded" and ``database.up`` is false.
        """
        _, report = await data.health()
        return JSONResponse(report, headers={"cache-control": "no-store"})

    @router.get("/metrics", tags=["operations"])
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def api_router(data: GatewayData, keys: ApiKeys, limiter: RateLimiter) -> APIRouter:
    async def guard(request: Request) -> None:
        """Per-address limit first (so guessing keys is limited too), then the key, then the per-key limit."""
        address = request.client.host if request.client else "unknown"
        if denied := limiter.take("addr:" + address):
            raise Refused(denied)
        presented = request.headers.get("x-api-key")
        if denied := keys.check(presented):
            raise Refused(denied)
        assert presented is not None
        if denied := limiter.take("key:" + hashlib.sha256(presented.encode()).hexdigest()[:24]):
            raise Refused(denied)

    router = APIRouter(prefix="/api/v1", dependencies=[Depends(guard)], tags=["api (X-API-Key)"])

    @router.get("/predictions/{symbol}")
    async def prediction(
        request: Request,
        symbol: str,
        model_name: str | None = None,
        timeframe: str | None = None,
        samples: bool = Query(False, description="include the sampled paths (sample_count x pred_len)"),
        history: int = Query(0, description="include this many candles that had closed by as_of"),
    ) -> Response:
        """The newest forecast with model version and event context; optionally sample paths and candles."""
        return served_response(
            request, await data.prediction(symbol, model_name, timeframe, samples, history), private=True
        )

    @router.get("/instruments")
    async def instruments(request: Request) -> Response:
        """Every instrument: asset class, candle counts and ranges, and which forecasts exist."""
        return served_response(request, await data.instruments(), private=True)

    @router.get("/performance")
    async def performance(
        request: Request,
        symbol: str | None = None,
        model_name: str | None = None,
        timeframe: str | None = None,
        window: str = Query("all", description="all or trailing_30d"),
    ) -> Response:
        """Scores per (symbol, timeframe, model): hit rate, p10-p90 coverage, CRPS, Sharpe; and calibration."""
        return served_response(request, await data.performance(symbol, model_name, timeframe, window), private=True)

    @router.get("/jobs")
    async def jobs(request: Request, limit: int = 50) -> Response:
        """Recent job runs, the last run of each job, and the freshness of candles and forecasts."""
        return served_response(request, await data.jobs(limit), private=True)

    return router


def refused_response(exc: Refused) -> JSONResponse:
    headers: dict[str, Any] = {}
    if exc.denied.status == 401:
        headers["www-authenticate"] = 'ApiKey header="X-API-Key"'
    if exc.denied.retry_after_s is not None:
        headers["retry-after"] = str(exc.denied.retry_after_s)
    return JSONResponse({"detail": exc.denied.detail}, status_code=exc.denied.status, headers=headers)
