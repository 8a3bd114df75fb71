"""Every read the gateway serves, by resource: parse the request (``params.py``), build its cache key
(``cache_key``, the one function that builds keys: the showcase fast path in ``middleware.py`` uses it too),
and read through the policy (``policy.py``) with the resource's payload builder (``payloads/``).

``GatewayData`` is what the routes, the MCP tools and the pages hold (as ``app.state.data``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.errors import DatabaseUnavailable, NotFoundError
from candlecast.gateway.cache import ALL_SYMBOLS, Key, Served
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.params import (
    parse_count,
    parse_forecast,
    parse_path_question,
    parse_paths,
    parse_performance,
    parse_prediction,
    parse_symbol,
    parse_timeframe,
)
from candlecast.gateway.payloads.fields import iso, iso_from_epoch, parse_iso
from candlecast.gateway.payloads.forecasts import prediction_payload, showcase_payload
from candlecast.gateway.payloads.instruments import instruments_payload
from candlecast.gateway.payloads.pages import home_payload, symbol_page_payload
from candlecast.gateway.payloads.paths import paths_payload
from candlecast.gateway.payloads.performance import performance_payload
from candlecast.gateway.payloads.status import jobs_payload, status_payload
from candlecast.gateway.policy import DB_ERRORS, ReadPolicy, public_error
from candlecast.gateway.questions import answer
from candlecast.store.db import resolve_database_url

__all__ = ["SHOWCASE", "GatewayData", "cache_key"]

# Resources, the first element of every cache key (they name entries in cache snapshots too: keep them stable).
SHOWCASE = "showcase"
PREDICTION = "prediction"
PATHS = "paths"
INSTRUMENTS = "instruments"
PERFORMANCE = "performance"
JOBS = "jobs"
STATUS = "status"
HOME_PAGE = "page:home"
SYMBOL_PAGE = "page:symbol"

_HEALTH_READ_ERRORS: tuple[type[BaseException], ...] = (DatabaseUnavailable, *DB_ERRORS)


def cached_error(body: dict[str, Any]) -> NotFoundError:
    """The ``NotFoundError`` a cached 404 body stands for (to raise it again where the answer is not the body)."""
    detail = str(body.get("detail", ""))
    return NotFoundError(str(body.get("field") or "symbol"), detail, body.get("available"))


def cache_key(resource: str, *params: Hashable) -> Key:
    """The cache key of a read: its resource, then its parsed parameters (from ``params.py``) in order.

    Requests that mean the same thing have equal parsed parameters, hence the same key; the fast path and
    the loaders both build keys here, so they cannot drift apart.
    """
    return (resource, *params)


class GatewayData:
    """The gateway's reads, each through the read policy (``policy``, which owns the cache)."""

    def __init__(self, settings: Settings, engine: Engine, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.gw = settings.gateway
        self.engine = engine
        self.metrics = metrics
        listen_url = resolve_database_url(settings) if self.gw.read_database_url else None
        self.policy = ReadPolicy(self.gw, engine, metrics, listen_url)
        self.cache = self.policy.cache

    async def start(self) -> None:
        await self.policy.start()

    async def stop(self) -> None:
        await self.policy.stop()

    # -- forecasts ----------------------------------------------------------------------------------

    async def showcase(self, symbol: str, model_name: str | None = None, timeframe: str | None = None) -> Served:
        """The newest forecast of a (symbol, model, timeframe), in the public showcase shape."""
        params = parse_forecast(symbol, model_name, timeframe, self.gw.default_model)
        loader = functools.partial(showcase_payload, self.engine, params, self.gw)
        return await self.policy.read(cache_key(SHOWCASE, *params), loader, params.symbol, self.gw.cache_ttl_s)

    async def prediction(
        self,
        symbol: str,
        model_name: str | None = None,
        timeframe: str | None = None,
        samples: bool = False,
        history: int = 0,
    ) -> Served:
        """The showcase fields plus model version, event context, optionally sample paths and candles."""
        gw = self.gw
        params = parse_prediction(
            symbol, model_name, timeframe, samples, history, gw.default_model, gw.max_history_candles
        )
        loader = functools.partial(prediction_payload, self.engine, params, gw)
        return await self.policy.read(cache_key(PREDICTION, *params), loader, params.symbol, gw.cache_ttl_s)

    async def paths(
        self,
        symbol: str,
        model_name: str | None = None,
        timeframe: str | None = None,
        forecast_id: int | None = None,
    ) -> Served:
        """The sample paths of the newest forecast (or of ``forecast_id``), as a cache entry (``payloads.paths``)."""
        params = parse_paths(symbol, model_name, timeframe, forecast_id, self.gw.default_model)
        loader = functools.partial(paths_payload, self.engine, params, self.gw)
        return await self.policy.read(cache_key(PATHS, *params), loader, params.symbol, self.gw.cache_ttl_s)

    async def ask_paths(
        self,
        symbol: str,
        question: str | None,
        model_name: str | None = None,
        timeframe: str | None = None,
        forecast_id: int | None = None,
        level: float | None = None,
        level_b: float | None = None,
        side: str | None = None,
        steps: int | None = None,
        by: str | None = None,
        max_standard_error: float | None = None,
    ) -> dict[str, Any]:
        """A path question answered from the cached paths (``questions.answer``); a forecast that does not exist
        raises ``NotFoundError`` as the cached 404 says."""
        asked = parse_path_question(question, level, level_b, side, steps, by, max_standard_error)
        served = await self.paths(symbol, model_name, timeframe, forecast_id)
        if served.status != 200:
            raise cached_error(served.value)
        return answer(served.entry, asked, stale=served.stale)

    # -- summaries ----------------------------------------------------------------------------------

    async def instruments(self) -> Served:
        loader = functools.partial(instruments_payload, self.engine, self.gw)
        return await self.policy.read(cache_key(INSTRUMENTS), loader, ALL_SYMBOLS, self.gw.summary_cache_ttl_s)

    async def performance(
        self,
        symbol: str | None = None,
        model_name: str | None = None,
        timeframe: str | None = None,
        window: str | None = "all",
    ) -> Served:
        params = parse_performance(symbol, model_name, timeframe, window)
        loader = functools.partial(performance_payload, self.engine, params, self.gw)
        return await self.policy.read(cache_key(PERFORMANCE, *params), loader, None, self.gw.summary_cache_ttl_s)

    async def jobs(self, limit: int = 50) -> Served:
        limit = parse_count(limit, "limit", 1, 500)
        loader = functools.partial(jobs_payload, self.engine, limit, self.gw)
        return await self.policy.read(cache_key(JOBS, limit), loader, ALL_SYMBOLS, self.gw.summary_cache_ttl_s)

    # -- pages --------------------------------------------------------------------------------------

    async def home_page(self, timeframe: str | None = None) -> Served:
        tf = parse_timeframe(timeframe, self.gw.home_timeframe)
        loader = functools.partial(home_payload, self.engine, tf, self.gw)
        return await self.policy.read(cache_key(HOME_PAGE, tf), loader, ALL_SYMBOLS, self.gw.cache_ttl_s)

    async def symbol_page(self, symbol: str) -> Served:
        symbol = parse_symbol(symbol)
        calendars = self.settings.market_calendars
        loader = functools.partial(symbol_page_payload, self.engine, symbol, self.gw, calendars)
        return await self.policy.read(cache_key(SYMBOL_PAGE, symbol), loader, symbol, self.gw.cache_ttl_s)

    async def evaluation_page(self, window: str | None = None) -> Served:
        return await self.performance(window=window)

    # -- operations ---------------------------------------------------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report). Healthy means the database answers and LISTEN is connected."""
        ping = asyncio.ensure_future(self.policy.ping_bounded())  # the ping and the read wait side by side
        summary: dict[str, Any] | None = None
        try:
            loader = functools.partial(status_payload, self.engine)
            read = self.policy.read(cache_key(STATUS), loader, ALL_SYMBOLS, self.gw.summary_cache_ttl_s)
            summary = (await read).value
        except _HEALTH_READ_ERRORS:
            summary = None
        database_up, error = await ping
        now = datetime.now(UTC)
        forecast_ages: dict[str, Any] = {}
        for tf, row in ((summary or {}).get("freshness") or {}).items():
            generated = parse_iso(row["newest_generated_at"])
            age = None if generated is None else (now - generated).total_seconds()
            if age is not None:
                self.metrics.forecast_age.labels(tf).set(age)
            forecast_ages[tf] = {**row, "newest_forecast_age_s": age}
        listener = self.policy.listener
        healthy = database_up and self.cache.listening
        report = {
            "status": "ok" if healthy else "degraded",
            "database": {
                "up": database_up,
                "error": error,
                "listener": "connected" if self.cache.listening else "reconnecting",
                "listener_error": public_error(listener.last_error),
                "notifications": listener.notifications,
                "last_notification_at": iso_from_epoch(listener.last_notify_at),
            },
            "cache": self.cache.stats(),
            "jobs": None if summary is None else summary["last_job_runs"],
            "forecasts": forecast_ages if summary is not None else None,
            "checked_at": iso(now),
        }
        return healthy, report
