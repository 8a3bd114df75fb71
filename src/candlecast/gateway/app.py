"""Assembling the gateway: the FastAPI app, its middleware and lifespan, and ``serve``.

Request path, outside in: ``PublicRateLimit`` (only when configured) -> ``ShowcaseFastPath`` (fresh
showcase hits answered here) -> ``MetricsMiddleware`` -> FastAPI routes (showcase, ``/api/v1``, pages,
``/mcp``, ``/health``, ``/metrics``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.gateway.data import DatabaseUnavailable, GatewayData, InputError
from candlecast.gateway.mcp_tools import build_mcp, mcp_route
from candlecast.gateway.metrics import GatewayMetrics, MetricsMiddleware
from candlecast.gateway.middleware import PublicRateLimit, ShowcaseFastPath
from candlecast.gateway.pages.routes import page_router
from candlecast.gateway.routes import Refused, api_router, public_router, refused_response
from candlecast.gateway.security import ApiKeys, RateLimiter
from candlecast.store.db import create_engine_for, resolve_database_url

__all__ = ["create_app", "gateway_engine", "serve"]

log = logging.getLogger(__name__)


def gateway_engine(settings: Settings, url: str | None = None) -> Engine:
    """An engine whose reads give up quickly when the database is away (so stale serving starts at once)."""
    timeout = settings.gateway.db_timeout_s
    return create_engine_for(
        url or resolve_database_url(settings),
        pool_size=5,
        max_overflow=5,
        pool_timeout=timeout,
        connect_args={
            "connect_timeout": max(1, round(timeout)),
            "options": f"-c statement_timeout={int(timeout * 1000)}",
        },
    )


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The gateway app. ``engine`` defaults to one on the configured database (see ``gateway_engine``);
    the LISTEN connection uses the same URL."""
    gw = settings.gateway
    metrics = GatewayMetrics()
    data = GatewayData(settings, engine or gateway_engine(settings), metrics)
    keys = ApiKeys(gw.api_keys)
    api_limiter = RateLimiter(gw.rate_limit_per_minute)
    mcp = build_mcp(data)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await data.start()
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            await data.stop()

    app = FastAPI(
        title="candlecast gateway",
        summary="Stored probabilistic forecasts of market candles: showcase, API, MCP and web pages.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.data = data
    app.state.metrics = metrics

    app.include_router(public_router(data, metrics))
    app.include_router(api_router(data, keys, api_limiter))
    app.include_router(page_router(data, settings))
    app.router.routes.append(mcp_route(mcp, gw.host, api_limiter, keys if gw.mcp_requires_key else None))

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=422)

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"retry-after": "1"})

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return refused_response(exc)

    # added innermost first
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        ShowcaseFastPath,
        cache=data.cache,
        metrics=metrics,
        default_model=gw.default_model,
        default_timeframe=gw.default_timeframe,
    )
    if gw.public_rate_limit_per_minute > 0:
        app.add_middleware(PublicRateLimit, limiter=RateLimiter(gw.public_rate_limit_per_minute), metrics=metrics)
    return app


def serve(settings: Settings) -> None:
    """Run the gateway with uvicorn on ``settings.gateway.host:port`` until interrupted."""
    gw = settings.gateway
    app = create_app(settings)
    # Everything alive now (modules, the app) lives as long as the process: take it out of the cyclic GC's
    # view. Otherwise each full collection rescans ~200k objects, a ~100 ms pause on the hot path.
    gc.collect()
    gc.freeze()
    log.info("candlecast gateway on http://%s:%d", gw.host, gw.port)
    uvicorn.run(app, host=gw.host, port=gw.port, log_level=settings.log_level.lower(), access_log=False)
