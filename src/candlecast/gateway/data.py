"""Every read the gateway serves, through one cache: showcase, API, MCP tools and web pages alike.

``GatewayData`` turns a request into a cache key and, on a miss, runs a loader (plain store calls, in a
worker thread) that builds a JSON-ready payload. The rules, in order:

1. a fresh entry is served as is;
2. when the database is believed unreachable (a read failed in the last ``db_retry_s``, or the LISTEN
   connection is down) an existing entry is served at once with ``stale: true`` and refreshed in the
   background;
3. otherwise the entry is loaded (one load per key at a time; concurrent readers share it). When that
   load fails, an existing entry is served stale; with nothing cached the caller gets
   ``DatabaseUnavailable`` (HTTP 503).

So a symbol served once keeps being served while the database is away, and a new forecast is served as
soon as its NOTIFY arrives (rule 1 stops applying to the entry; rule 3 loads the new row).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import pandas as pd
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.gateway.cache import ALL_SYMBOLS, CacheEntry, ResponseCache
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.notify import NotifyListener
from candlecast.store.candles import latest_candles, latest_candles_many, list_instruments
from candlecast.store.jobs import last_job_runs, recent_job_runs
from candlecast.store.performance import PERFORMANCE_WINDOWS, calibration, performance
from candlecast.store.predictions import Prediction, latest_prediction, latest_predictions
from candlecast.store.schema import TIMEFRAMES
from candlecast.store.status import data_freshness, forecast_slots, instrument_exists, list_active_instruments

__all__ = [
    "DatabaseUnavailable",
    "GatewayData",
    "InputError",
    "Served",
    "parse_model",
    "parse_symbol",
    "parse_timeframe",
]

log = logging.getLogger(__name__)

# Same rule as the instruments table's CHECK constraint (after upper-casing).
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
MODEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
NOMINAL_COVERAGE = 0.8  # p10..p90
# Failures that mean "the database is not reachable" (as opposed to a bug in a query).
DB_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)
Loaded = tuple[int, dict[str, Any]]  # (HTTP status, payload)


class InputError(ValueError):
    """A malformed request value; the message names the field (HTTP 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DatabaseUnavailable(RuntimeError):
    """The database could not be read and nothing was cached for this request (HTTP 503)."""


def parse_symbol(raw: str, field: str = "symbol") -> str:
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InputError(field, f"malformed symbol {raw[:40]!r}: 1-32 of A-Z, 0-9, '.', '_', '-'")
    return symbol


def parse_model(raw: str | None, default: str, field: str = "model_name") -> str:
    model = raw or default
    if not MODEL_PATTERN.fullmatch(model):
        raise InputError(field, f"malformed model name {model[:70]!r}")
    return model


def parse_timeframe(raw: str | None, default: str, field: str = "timeframe") -> str:
    timeframe = raw or default
    if timeframe not in TIMEFRAMES:
        raise InputError(field, f"must be one of {list(TIMEFRAMES)}, found {timeframe[:20]!r}")
    return timeframe


@dataclass(frozen=True)
class Served:
    """A cached answer and whether it is served stale (the database could not confirm it)."""

    entry: CacheEntry
    stale: bool

    @property
    def status(self) -> int:
        return self.entry.status

    @property
    def body(self) -> bytes:
        return self.entry.stale_body()[0] if self.stale else self.entry.body

    @property
    def etag(self) -> bytes:
        return self.entry.stale_body()[1] if self.stale else self.entry.etag

    @property
    def cache_control(self) -> bytes:
        return self.entry.stale_cache_control if self.stale else self.entry.cache_control

    @property
    def value(self) -> dict[str, Any]:
        value = self.entry.value
        return {**value, "stale": True} if self.stale and "stale" in value else value


class GatewayData:
    """The gateway's reads, cache and database state."""

    def __init__(self, settings: Settings, engine: Engine, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.gw = gw = settings.gateway
        self.engine = engine
        self.metrics = metrics
        cache_control = (
            f"public, max-age={gw.http_max_age_s}, stale-while-revalidate={gw.http_stale_while_revalidate_s}, "
            f"stale-if-error={gw.http_stale_if_error_s}"
        )
        self.cache = ResponseCache(
            cache_control,
            f"public, max-age=0, stale-if-error={gw.http_stale_if_error_s}",
            max_bytes=gw.cache_max_mb * 2**20,
        )
        self.listener = NotifyListener(
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False),
            on_notify=self._on_notify,
            on_state=self._on_listener_state,
            connect_timeout_s=gw.db_timeout_s,
            ping_s=gw.notify_ping_s,
            backoff_max_s=gw.notify_backoff_max_s,
        )
        self.listening = asyncio.Event()
        self.db_error: str | None = None
        self._retry_at = 0.0  # monotonic; before it, reads do not try the database
        self._inflight: dict[tuple[Hashable, ...], asyncio.Task[Served]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._listener_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        metrics.cache_entries.set_function(lambda: len(self.cache.entries))

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; wait (up to the DB timeout) for LISTEN so the first reads can be trusted."""
        snapshot = self.gw.cache_snapshot_path
        if snapshot is not None:
            restored = self.cache.restore(snapshot)
            log.info(
                "restored %d cached responses from %s (stale until the database confirms them)", restored, snapshot
            )
            self._snapshot_task = asyncio.create_task(self._save_periodically(snapshot), name="candlecast-snapshot")
        self._listener_task = asyncio.create_task(self.listener.run(), name="candlecast-listen")
        try:
            await asyncio.wait_for(self.listening.wait(), timeout=self.gw.db_timeout_s)
        except TimeoutError:
            log.warning("database not reachable at start; serving nothing until it is (%s)", self.listener.last_error)

    async def _save_periodically(self, path: Path) -> None:
        while True:
            await asyncio.sleep(self.gw.cache_snapshot_interval_s)
            await anyio.to_thread.run_sync(self.cache.save, path)

    async def stop(self) -> None:
        tasks = [t for t in (self._listener_task, self._snapshot_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.gw.cache_snapshot_path is not None:
            self.cache.save(self.gw.cache_snapshot_path)
        await anyio.to_thread.run_sync(self.engine.dispose)

    def _on_notify(self, message: dict[str, Any]) -> None:
        self.metrics.notifications.inc()
        symbol = message.get("symbol")
        if isinstance(symbol, str):
            self.cache.invalidate_symbol(symbol)
        else:
            self.cache.invalidate_all()

    def _on_listener_state(self, connected: bool) -> None:
        self.cache.listening = connected
        self.metrics.listening.set(1 if connected else 0)
        if connected:
            self.cache.invalidate_all()  # whatever changed while nobody listened
            self.listening.set()
        else:
            self.listening.clear()

    # -- the read rules -----------------------------------------------------------------------------

    def _db_suspect(self, scope: str | None) -> bool:
        return time.monotonic() < self._retry_at or (scope is not None and not self.cache.listening)

    async def read(
        self, key: tuple[Hashable, ...], loader: Callable[[], Loaded], scope: str | None, ttl_s: float
    ) -> Served:
        entry = self.cache.fresh(key)
        if entry is not None:
            self.metrics.cache_hit.inc()
            return Served(entry, False)
        existing = self.cache.get(key)
        if existing is not None and self._db_suspect(scope):
            if time.monotonic() >= self._retry_at and key not in self._inflight:
                task = asyncio.create_task(self._load_shared(key, loader, scope, ttl_s))
                self._background.add(task)
                task.add_done_callback(self._background_done)
            self.metrics.cache_stale.inc()
            return Served(existing, True)
        try:
            return await self._load_shared(key, loader, scope, ttl_s)
        except Exception as exc:
            existing = self.cache.get(key)
            if existing is None:
                if isinstance(exc, DB_ERRORS):
                    raise DatabaseUnavailable(f"database unreachable and nothing cached: {self.db_error}") from exc
                raise
            if not isinstance(exc, DB_ERRORS):
                log.exception("loading %r failed; serving the cached entry", key)
            self.metrics.cache_stale.inc()
            return Served(existing, True)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background refresh failed: %s", task.exception())

    async def _load_shared(
        self, key: tuple[Hashable, ...], loader: Callable[[], Loaded], scope: str | None, ttl_s: float
    ) -> Served:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, loader, scope, ttl_s))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _load(
        self, key: tuple[Hashable, ...], loader: Callable[[], Loaded], scope: str | None, ttl: float
    ) -> Served:
        token = self.cache.token(scope)
        try:
            status, value = await anyio.to_thread.run_sync(loader)
        except DB_ERRORS as exc:
            self.db_error = f"{type(exc).__name__}: {exc}".strip()[:500]
            self._retry_at = time.monotonic() + self.gw.db_retry_s
            self.metrics.db_up.set(0)
            raise
        self.db_error = None
        self._retry_at = 0.0
        self.metrics.db_up.set(1)
        self.metrics.cache_miss.inc()
        return Served(self.cache.put(key, status, value, ttl, scope, token), False)

    # -- reads ------------------------------------------------------------------------------------

    async def showcase(self, symbol: str, model_name: str | None = None, timeframe: str | None = None) -> Served:
        """The newest forecast of a (symbol, model, timeframe), in the public showcase shape."""
        symbol = parse_symbol(symbol)
        model = parse_model(model_name, self.gw.default_model)
        tf = parse_timeframe(timeframe, self.gw.default_timeframe)
        loader = functools.partial(_load_showcase, self.engine, symbol, model, tf)
        return await self.read(("showcase", symbol, model, tf), loader, symbol, self.gw.cache_ttl_s)

    async def prediction(
        self,
        symbol: str,
        model_name: str | None = None,
        timeframe: str | None = None,
        samples: bool = False,
        history: int = 0,
    ) -> Served:
        """The showcase fields plus model version, event context, optionally sample paths and candles."""
        symbol = parse_symbol(symbol)
        model = parse_model(model_name, self.gw.default_model)
        tf = parse_timeframe(timeframe, self.gw.default_timeframe)
        if not 0 <= history <= self.gw.max_history_candles:
            raise InputError("history", f"must be between 0 and {self.gw.max_history_candles}, found {history}")
        loader = functools.partial(_load_prediction, self.engine, symbol, model, tf, samples, history)
        key = ("prediction", symbol, model, tf, samples, history)
        return await self.read(key, loader, symbol, self.gw.cache_ttl_s)

    async def instruments(self) -> Served:
        loader = functools.partial(_load_instruments, self.engine)
        return await self.read(("instruments",), loader, ALL_SYMBOLS, self.gw.summary_cache_ttl_s)

    async def performance(
        self,
        symbol: str | None = None,
        model_name: str | None = None,
        timeframe: str | None = None,
        window: str | None = "all",
    ) -> Served:
        symbol = parse_symbol(symbol) if symbol else None
        model = parse_model(model_name, "") if model_name else None
        tf = parse_timeframe(timeframe, "") if timeframe else None
        window = window or "all"
        if window not in PERFORMANCE_WINDOWS:
            raise InputError("window", f"must be one of {list(PERFORMANCE_WINDOWS)}, found {window[:20]!r}")
        loader = functools.partial(_load_performance, self.engine, symbol, model, tf, window)
        return await self.read(("performance", symbol, model, tf, window), loader, None, self.gw.summary_cache_ttl_s)

    async def jobs(self, limit: int = 50) -> Served:
        if not 1 <= limit <= 500:
            raise InputError("limit", f"must be between 1 and 500, found {limit}")
        loader = functools.partial(_load_jobs, self.engine, limit)
        return await self.read(("jobs", limit), loader, ALL_SYMBOLS, self.gw.summary_cache_ttl_s)

    async def home_page(self, timeframe: str | None = None) -> Served:
        tf = parse_timeframe(timeframe, self.gw.home_timeframe)
        loader = functools.partial(_load_home, self.engine, tf, self.gw.default_model, self.gw.card_candles)
        return await self.read(("page:home", tf), loader, ALL_SYMBOLS, self.gw.cache_ttl_s)

    async def symbol_page(self, symbol: str) -> Served:
        symbol = parse_symbol(symbol)
        default = (self.gw.default_model, self.gw.default_timeframe)
        loader = functools.partial(_load_symbol_page, self.engine, symbol, default, self.gw.history_candles)
        return await self.read(("page:symbol", symbol), loader, symbol, self.gw.cache_ttl_s)

    async def evaluation_page(self, window: str | None = None) -> Served:
        return await self.performance(window=window)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, report). Healthy means the database answers and LISTEN is connected."""
        database_up, error = await anyio.to_thread.run_sync(self._ping)
        status: dict[str, Any] | None = None
        try:
            status = (await self.read(("status",), functools.partial(_load_status, self.engine), ALL_SYMBOLS,
                                      self.gw.summary_cache_ttl_s)).value  # fmt: skip
        except (DatabaseUnavailable, *DB_ERRORS):
            status = None
        now = datetime.now(UTC)
        forecasts: dict[str, Any] = {}
        for tf, row in ((status or {}).get("freshness") or {}).items():
            generated = _parse_iso(row["newest_generated_at"])
            age = None if generated is None else (now - generated).total_seconds()
            if age is not None:
                self.metrics.forecast_age.labels(tf).set(age)
            forecasts[tf] = {**row, "newest_forecast_age_s": age}
        healthy = database_up and self.cache.listening
        report = {
            "status": "ok" if healthy else "degraded",
            "database": {
                "up": database_up,
                "error": error,
                "listener": "connected" if self.cache.listening else "reconnecting",
                "listener_error": self.listener.last_error,
                "notifications": self.listener.notifications,
                "last_notification_at": _iso_from_epoch(self.listener.last_notify_at),
            },
            "cache": self.cache.stats(),
            "jobs": None if status is None else status["last_job_runs"],
            "forecasts": forecasts if status is not None else None,
            "checked_at": _iso(now),
        }
        return healthy, report

    def _ping(self) -> tuple[bool, str | None]:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DB_ERRORS as exc:
            return False, f"{type(exc).__name__}: {exc}".strip()[:500]
        return True, None


# -- loaders: run in a worker thread, return (status, JSON-ready payload) ---------------------------------


def _iso(ts: datetime | pd.Timestamp | None) -> str | None:
    if ts is None or ts is pd.NaT:
        return None
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _iso_from_epoch(seconds: float | None) -> str | None:
    return None if seconds is None else _iso(datetime.fromtimestamp(seconds, UTC))


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _floats(values: Iterable[Any]) -> list[float | None]:
    """Plain floats for JSON; NaN and infinities become null."""
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(f if f is not None and math.isfinite(f) else None)
    return out


def _showcase_fields(p: Prediction) -> dict[str, Any]:
    return {
        "symbol": p.symbol,
        "model_name": p.model_name,
        "timeframe": p.timeframe,
        "generated_at": _iso(p.generated_at),
        "as_of": _iso(p.as_of),
        "target_timestamps": [_iso(ts) for ts in p.target_ts],
        "p10": _floats(p.p10),
        "p50": _floats(p.p50),
        "p90": _floats(p.p90),
        "last_close": _floats([p.last_close])[0],
    }


def _candles_payload(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"ts": [_iso(ts) for ts in frame["ts"]] if len(frame) else []}
    for column in columns:
        out[column] = _floats(frame[column]) if len(frame) else []
    return out


def _not_found(engine: Engine, symbol: str, model: str, timeframe: str) -> Loaded:
    if not instrument_exists(engine, symbol):
        return 404, {"detail": f"unknown symbol {symbol!r}"}
    available = [{"model_name": s.model_name, "timeframe": s.timeframe} for s in forecast_slots(engine, symbol)]
    detail = f"no {timeframe} forecast of {symbol} by model {model!r}"
    return 404, {"detail": detail, "available": available}


def _load_showcase(engine: Engine, symbol: str, model: str, timeframe: str) -> Loaded:
    p = latest_prediction(engine, symbol, model, timeframe)
    if p is None:
        return _not_found(engine, symbol, model, timeframe)
    return 200, {**_showcase_fields(p), "stale": False}


def _load_prediction(engine: Engine, symbol: str, model: str, timeframe: str, samples: bool, history: int) -> Loaded:
    p = latest_prediction(engine, symbol, model, timeframe, with_samples=samples)
    if p is None:
        return _not_found(engine, symbol, model, timeframe)
    payload: dict[str, Any] = {
        **_showcase_fields(p),
        "model_version": p.model_version,
        "pred_len": p.pred_len,
        "event_context": p.event_context,
    }
    if samples:
        payload["samples"] = None if p.samples is None else [_floats(path) for path in p.samples]
    if history:
        frame = latest_candles(engine, symbol, timeframe, history, as_of=p.as_of)
        payload["history"] = _candles_payload(frame, ("open", "high", "low", "close", "volume"))
    payload["stale"] = False
    return 200, payload


def _load_instruments(engine: Engine) -> Loaded:
    slots: dict[str, list[dict[str, Any]]] = {}
    for s in forecast_slots(engine):
        slots.setdefault(s.symbol, []).append(
            {"model_name": s.model_name, "timeframe": s.timeframe, "as_of": _iso(s.as_of),
             "generated_at": _iso(s.generated_at)}
        )  # fmt: skip
    rows = []
    for summary in list_instruments(engine):
        i = summary.instrument
        rows.append({
            "symbol": i.symbol, "asset_class": i.asset_class, "name": i.name, "quote_currency": i.quote_currency,
            "bar_kind": i.bar_kind, "active": i.active,
            "candles": {
                "1h": {"rows": summary.rows_1h, "first": _iso(summary.first_1h), "last": _iso(summary.last_1h)},
                "1d": {"rows": summary.rows_1d, "first": _iso(summary.first_1d), "last": _iso(summary.last_1d)},
            },
            "forecasts": slots.get(i.symbol, []),
        })  # fmt: skip
    return 200, {"instruments": rows, "stale": False}


def _performance_row(row: Any) -> dict[str, Any]:
    out = dict(row.__dict__)
    for name in ("first_as_of", "last_as_of", "refreshed_from"):
        out[name] = _iso(out[name])
    for name in ("hit_rate", "coverage", "mean_crps", "mean_pinball", "mean_strategy_return", "sharpe"):
        out[name] = _floats([out[name]])[0]
    return out


def _load_performance(
    engine: Engine, symbol: str | None, model: str | None, timeframe: str | None, window: str
) -> Loaded:
    rows = performance(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    calib = calibration(engine, symbol=symbol, model_name=model, timeframe=timeframe)
    return 200, {
        "window": window,
        "nominal_coverage": NOMINAL_COVERAGE,
        "rows": [_performance_row(r) for r in rows],
        "calibration": [
            {**c.__dict__, "nominal": [0.1, 0.5, 0.9], "observed": [c.below_p10, c.below_p50, c.below_p90]}
            for c in calib
        ],
        "stale": False,
    }


def _job_run(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_name": run.job_name,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "duration_s": run.duration_s,
        "as_of": _iso(run.as_of),
        "counts": run.counts,
        "errors": run.errors,
        "error": run.error,
        "host": run.host,
    }


def _freshness(engine: Engine) -> dict[str, Any]:
    return {
        tf: {
            "newest_candle_ts": _iso(f.newest_candle_ts),
            "symbols_with_candles": f.symbols_with_candles,
            "newest_forecast_as_of": _iso(f.newest_forecast_as_of),
            "newest_generated_at": _iso(f.newest_generated_at),
            "forecast_slots": f.forecast_slots,
        }
        for tf, f in data_freshness(engine).items()
    }


def _load_jobs(engine: Engine, limit: int) -> Loaded:
    return 200, {
        "runs": [_job_run(r) for r in recent_job_runs(engine, limit=limit)],
        "last_runs": {name: _job_run(r) for name, r in last_job_runs(engine).items()},
        "freshness": _freshness(engine),
        "stale": False,
    }


def _load_status(engine: Engine) -> Loaded:
    return 200, {
        "last_job_runs": {
            name: {"status": r.status, "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at)}
            for name, r in last_job_runs(engine).items()
        },
        "freshness": _freshness(engine),
    }


def _load_home(engine: Engine, timeframe: str, default_model: str, n_candles: int) -> Loaded:
    instruments = list_active_instruments(engine)
    by_symbol: dict[str, dict[str, Prediction]] = {}
    for p in latest_predictions(engine, timeframe):
        by_symbol.setdefault(p.symbol, {})[p.model_name] = p
    chosen: dict[str, Prediction] = {}
    for symbol, models in by_symbol.items():
        chosen[symbol] = models.get(default_model) or models[sorted(models)[0]]
    # one candle query per distinct as_of (a replay usually has a single one)
    history: dict[str, pd.DataFrame] = {}
    by_as_of: dict[datetime, list[str]] = {}
    for symbol, p in chosen.items():
        by_as_of.setdefault(p.as_of, []).append(symbol)
    for as_of, symbols in by_as_of.items():
        history.update(latest_candles_many(engine, symbols, timeframe, n_candles, as_of))
    cards = []
    for i in instruments:
        p = chosen.get(i.symbol)
        card: dict[str, Any] = {"symbol": i.symbol, "asset_class": i.asset_class, "name": i.name, "forecast": None}
        if p is not None:
            frame = history.get(i.symbol)
            card["forecast"] = {
                **_showcase_fields(p),
                "models": sorted(by_symbol[i.symbol]),
                "history": _candles_payload(frame, ("close",)) if frame is not None else {"ts": [], "close": []},
            }
        cards.append(card)
    return 200, {"timeframe": timeframe, "cards": cards, "stale": False}


def _load_symbol_page(engine: Engine, symbol: str, default: tuple[str, str], n_candles: int) -> Loaded:
    if not instrument_exists(engine, symbol):
        return 404, {"detail": f"unknown symbol {symbol!r}"}
    series: dict[str, Any] = {}
    for slot in forecast_slots(engine, symbol):
        p = latest_prediction(engine, symbol, slot.model_name, slot.timeframe)
        if p is None:  # replaced between the two reads
            continue
        frame = latest_candles(engine, symbol, slot.timeframe, n_candles, as_of=p.as_of)
        series[f"{p.model_name}|{p.timeframe}"] = {
            **_showcase_fields(p),
            "model_version": p.model_version,
            "candles": _candles_payload(frame, ("open", "high", "low", "close")),
        }
    models = sorted({key.split("|")[0] for key in series})
    timeframes = [tf for tf in TIMEFRAMES if any(key.endswith("|" + tf) for key in series)]
    wanted = f"{default[0]}|{default[1]}"
    selected = wanted if wanted in series else (sorted(series)[0] if series else None)
    return 200, {
        "symbol": symbol,
        "models": models,
        "timeframes": timeframes,
        "selected": selected,
        "series": series,
        "stale": False,
    }
