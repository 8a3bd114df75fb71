"""Assembling the gateway: the FastAPI app, its middleware and lifespan, the one error handler, and ``serve``.

Request path, outside in: ``SecurityHeaders`` -> ``CORSMiddleware`` (when ``gateway.cors_allow_origins`` is
set) -> ``PublicRateLimit`` (only when configured) -> ``ShowcaseFastPath`` (fresh
showcase hits answered here) -> ``MetricsMiddleware`` -> FastAPI routes (``routes.showcase``, ``routes.api``,
``routes.operations``, ``pages.routes``, ``/mcp``).

What the routes depend on lives on ``app.state`` (``settings``, ``data``, ``metrics``, ``api_keys``,
``api_limiter``; see ``routes.deps``). Errors are ``candlecast.errors`` exceptions, answered by one handler:
JSON (``responses.error_response``) or, for a page, the HTML error page, with the status
``errors.http_status`` gives. FastAPI's own request validation errors are turned into the same ``InputError``
first, so every 422 has the one ``{detail, field}`` shape.

``/docs`` and ``/redoc`` are served from the package (``pages.docs``), not from a CDN.

``serve`` refuses to listen on a non-loopback address without API keys (``check_exposure``), and believes
``X-Forwarded-For`` only from ``gateway.forwarded_allow_ips`` (none by default: see ``server_config``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from sqlalchemy.engine import Engine

from candlecast.config import Settings, is_loopback
from candlecast.errors import CandlecastError, InputError
from candlecast.gateway.mcp_tools import build_mcp, mcp_route
from candlecast.gateway.metrics import GatewayMetrics, MetricsMiddleware, route_family
from candlecast.gateway.middleware import PublicRateLimit, SecurityHeaders, ShowcaseFastPath
from candlecast.gateway.pages import docs
from candlecast.gateway.pages import routes as pages
from candlecast.gateway.reads import GatewayData
from candlecast.gateway.responses import error_response
from candlecast.gateway.routes import api, operations, showcase
from candlecast.gateway.schemas import API_VERSION
from candlecast.gateway.security import ApiKeys, make_limiter
from candlecast.store.db import create_engine_for, resolve_database_url

__all__ = ["check_exposure", "create_app", "gateway_engine", "input_error", "serve", "server_config"]

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


async def candlecast_error(request: Request, exc: Exception) -> Response:
    """The one place a raised ``CandlecastError`` becomes an HTTP answer."""
    assert isinstance(exc, CandlecastError)
    if route_family(request.url.path) == "page":
        return pages.error_page(request, exc)
    return error_response(exc)


def input_error(exc: RequestValidationError) -> InputError:
    """FastAPI's validation error (a list of pydantic errors) as the one ``InputError`` naming the first field at
    fault, in one line without the validator's own text."""
    parts: list[str] = []
    field = ""
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "header", "body")]
        name = ".".join(loc) or "request"
        field = field or name
        message = str(error.get("msg", "is invalid"))
        found = error.get("input")
        found_text = "" if found is None else f", found {found!r:.40}"
        parts.append(f"{name}: {message[:1].lower()}{message[1:]}{found_text}")
    detail = "; ".join(parts) or "invalid request"
    return InputError(field, detail.removeprefix(f"{field}: "))


async def request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return await candlecast_error(request, input_error(exc))


API_DESCRIPTION = """Stored probabilistic forecasts of market candles (p10/p50/p90 of the close per future candle),
made ahead of time by scheduled batch jobs and served from a cache.

- **Timestamps** are ISO 8601 in UTC with `Z`. A candle's timestamp is its **open** time: the 1h candle stamped
  10:00Z covers 10:00-11:00 and its close is the price at 11:00Z; `target_timestamps` name forecast candles the
  same way.
- **Replay or live**: `data_mode` is `replay` when `data_as_of` (the market time the data reflects) is more than
  `gateway.replay_after_h` hours (96) before the answer was read; the shipped sample data is a historical replay.
- **Prices** are rounded to six significant digits at the instrument's price level (never fewer than 2 decimals).
- **Errors** are `{"detail", "field"?, "available"?}`: 422 names the `field`, 404 lists what is `available`.
- **Keys**: `/api/v1` needs the `X-API-Key` header (set keys with `CANDLECAST_GATEWAY__API_KEYS='["key"]'`);
  the showcase and the pages need none; MCP (`POST /mcp`) follows the same rule: with keys configured, its tools
  list_instruments and get_performance need the key and get_forecast (the showcase's data) does not.
"""


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The gateway app. ``engine`` defaults to one on ``gateway.read_database_url`` (a read replica) or else the
    configured database (see ``gateway_engine``); the LISTEN connection uses the primary (``database_url``) when a
    read replica is set, else the engine's URL."""
    gw = settings.gateway
    metrics = GatewayMetrics()
    data = GatewayData(settings, engine or gateway_engine(settings, gw.read_database_url), metrics)
    keys = ApiKeys(gw.api_keys)
    api_limiter = make_limiter(gw.rate_limit_per_minute, gw.rate_limit_redis_url, gw.rate_limit_redis_prefix)
    configured = keys if any(gw.api_keys) else None  # MCP follows /api/v1 only when keys are configured
    mcp = build_mcp(data, configured)

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
        description=API_DESCRIPTION,
        version=API_VERSION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by pages.docs, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.data = data
    app.state.metrics = metrics
    app.state.api_keys = keys
    app.state.api_limiter = api_limiter

    app.include_router(showcase.router)
    app.include_router(operations.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(docs.router)
    route = mcp_route(
        mcp,
        gw.host,
        api_limiter,
        keys if gw.mcp_requires_key else configured,
        require_key=gw.mcp_requires_key,
        max_streams=gw.mcp_max_streams,
        stream_timeout_s=gw.mcp_stream_timeout_s,
    )
    app.state.mcp_guard = route.endpoint  # its open_streams count
    app.router.routes.append(route)
    app.add_exception_handler(CandlecastError, candlecast_error)
    app.add_exception_handler(RequestValidationError, request_validation_error)

    # added innermost first
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if gw.public_rate_limit_per_minute > 0:
        public = make_limiter(gw.public_rate_limit_per_minute, gw.rate_limit_redis_url, gw.rate_limit_redis_prefix)
        app.add_middleware(PublicRateLimit, limiter=public, metrics=metrics)
    if gw.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=gw.cors_allow_origins,
            allow_methods=["GET", "HEAD"],
            allow_headers=["X-API-Key", "If-None-Match"],
            allow_credentials=False,
            expose_headers=["ETag", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(  # outermost: a fresh showcase hit skips every layer above, adding what they would add
        ShowcaseFastPath,
        cache=data.cache,
        metrics=metrics,
        default_model=gw.default_model,
        cors=bool(gw.cors_allow_origins),
        rate_limited=gw.public_rate_limit_per_minute > 0,
    )
    return app


def check_exposure(settings: Settings) -> None:
    """Refuse to serve on a non-loopback address without API keys (``InputError``, field ``gateway.api_keys``):
    bound there, the gateway is meant for other machines, and its keyed routes and /metrics must be closable."""
    gw = settings.gateway
    if any(gw.api_keys) or is_loopback(gw.host):
        return
    raise InputError(
        "gateway.api_keys",
        f"refusing to listen on {gw.host}:{gw.port} without API keys: set CANDLECAST_GATEWAY__API_KEYS='[\"key\"]' "
        "or bind to 127.0.0.1",
    )


def server_config(
    app: FastAPI, settings: Settings, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    """uvicorn's configuration of the gateway: proxy headers only from ``gateway.forwarded_allow_ips``."""
    gw = settings.gateway
    return uvicorn.Config(
        app,
        host=gw.host,
        port=gw.port if port is None else port,
        log_level=(log_level or settings.log_level).lower(),
        access_log=False,
        proxy_headers=bool(gw.forwarded_allow_ips),
        forwarded_allow_ips=",".join(gw.forwarded_allow_ips) or None,
    )


def serve(settings: Settings) -> None:
    """Run the gateway with uvicorn on ``settings.gateway.host:port`` until interrupted."""
    gw = settings.gateway
    check_exposure(settings)
    app = create_app(settings)
    # Everything alive now (modules, the app) lives as long as the process: take it out of the cyclic GC's
    # view. Otherwise each full collection rescans ~200k objects, a ~100 ms pause on the hot path.
    gc.collect()
    gc.freeze()
    log.info("candlecast gateway on http://%s:%d", gw.host, gw.port)
    uvicorn.Server(server_config(app, settings)).run()
