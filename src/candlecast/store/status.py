"""What the store currently holds: which forecasts exist, how fresh candles and forecasts are.

Small reads for the gateway's pages, ``/health`` and ``/api/v1/jobs`` (job runs themselves are in
``store.jobs``). Every query here uses an index, so it stays cheap as the tables grow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import read_rows
from candlecast.store.candles import Instrument
from candlecast.store.schema import TIMEFRAMES, candle_table

__all__ = [
    "CandleSpan",
    "ForecastSlot",
    "ForecastWindow",
    "TimeframeFreshness",
    "candle_spans",
    "data_freshness",
    "forecast_slots",
    "forecast_window",
    "instrument_exists",
    "list_active_instruments",
]


@dataclass(frozen=True)
class ForecastSlot:
    """The newest forecast of one (symbol, model, timeframe)."""

    symbol: str
    model_name: str
    timeframe: str
    as_of: datetime
    generated_at: datetime


@dataclass(frozen=True)
class TimeframeFreshness:
    timeframe: str
    newest_candle_ts: datetime | None  # open time of the newest stored candle of any instrument
    symbols_with_candles: int
    newest_forecast_as_of: datetime | None
    newest_generated_at: datetime | None  # when the newest forecast row was written
    forecast_slots: int  # distinct (symbol, model) pairs with a forecast


@dataclass(frozen=True)
class CandleSpan:
    """The first and last stored candle (open times) of one symbol in one timeframe."""

    first: datetime
    last: datetime


@dataclass(frozen=True)
class ForecastWindow:
    """The as-of times the stored forecasts of one timeframe span, over every symbol and model."""

    first_as_of: datetime
    last_as_of: datetime


def instrument_exists(bind: Engine | Connection, symbol: str) -> bool:
    _, rows = read_rows(bind, "SELECT 1 FROM instruments WHERE symbol = %(symbol)s", {"symbol": symbol})
    return bool(rows)


def list_active_instruments(bind: Engine | Connection) -> list[Instrument]:
    """Active instruments by asset class and symbol (without the candle counts of ``list_instruments``)."""
    sql = (
        "SELECT symbol, asset_class, name, source, quote_currency, bar_kind, active FROM instruments "
        "WHERE active ORDER BY asset_class, symbol"
    )
    _, rows = read_rows(bind, sql)
    return [Instrument(*row) for row in rows]


def forecast_slots(bind: Engine | Connection, symbol: str | None = None) -> list[ForecastSlot]:
    """The newest forecast of every (symbol, model, timeframe), optionally of one symbol."""
    sql = """
        SELECT p.symbol, p.model_name, p.timeframe, p.as_of, p.generated_at
        FROM forecast_heads h JOIN ml_predictions p ON p.symbol = h.symbol AND p.model_name = h.model_name
            AND p.timeframe = h.timeframe AND p.as_of = h.as_of
        WHERE (%(symbol)s::text IS NULL OR h.symbol = %(symbol)s)
        ORDER BY p.symbol, p.model_name, p.timeframe"""
    names, rows = read_rows(bind, sql, {"symbol": symbol})
    return [ForecastSlot(**dict(zip(names, row, strict=True))) for row in rows]


def data_freshness(bind: Engine | Connection) -> dict[str, TimeframeFreshness]:
    """Per timeframe: the newest candle and the newest forecast."""
    out: dict[str, TimeframeFreshness] = {}
    for timeframe in TIMEFRAMES:
        # One index probe per instrument rather than a scan of the candle table.
        candles_sql = f"""
            SELECT max(c.ts), count(c.ts) FROM instruments i
            CROSS JOIN LATERAL (
                SELECT ts FROM {candle_table(timeframe).name} t WHERE t.symbol = i.symbol ORDER BY ts DESC LIMIT 1) c"""
        _, candle_rows = read_rows(bind, candles_sql)
        forecast_sql = """
            SELECT max(p.as_of), max(p.generated_at), count(*)
            FROM forecast_heads h JOIN ml_predictions p ON p.symbol = h.symbol AND p.model_name = h.model_name
                AND p.timeframe = h.timeframe AND p.as_of = h.as_of
            WHERE h.timeframe = %(timeframe)s"""
        _, forecast_rows = read_rows(bind, forecast_sql, {"timeframe": timeframe})
        (newest_ts, n_symbols), (newest_as_of, newest_generated, n_slots) = candle_rows[0], forecast_rows[0]
        out[timeframe] = TimeframeFreshness(
            timeframe, newest_ts, int(n_symbols), newest_as_of, newest_generated, int(n_slots)
        )
    return out


def candle_spans(bind: Engine | Connection, symbols: list[str], timeframe: str) -> dict[str, CandleSpan]:
    """First and last candle of each of ``symbols`` in ``timeframe`` (two index probes each); symbols
    without candles are absent."""
    table = candle_table(timeframe).name
    sql = f"""
        SELECT s.symbol,
               (SELECT ts FROM {table} t WHERE t.symbol = s.symbol ORDER BY ts LIMIT 1),
               (SELECT ts FROM {table} t WHERE t.symbol = s.symbol ORDER BY ts DESC LIMIT 1)
        FROM unnest(%(symbols)s::text[]) AS s(symbol)"""
    _, rows = read_rows(bind, sql, {"symbols": list(symbols)})
    return {symbol: CandleSpan(first, last) for symbol, first, last in rows if first is not None}


def forecast_window(bind: Engine | Connection, timeframe: str) -> ForecastWindow | None:
    """The earliest and newest ``as_of`` of any stored ``timeframe`` forecast (None: there is none).

    In a replay this is the replayed stretch; one probe of the (symbol, timeframe, ...) index per instrument."""
    sql = """
        SELECT min(w.first), max(w.last) FROM instruments i
        CROSS JOIN LATERAL (
            SELECT min(as_of) first, max(as_of) last FROM ml_predictions p
            WHERE p.symbol = i.symbol AND p.timeframe = %(timeframe)s) w"""
    _, rows = read_rows(bind, sql, {"timeframe": timeframe})
    first, last = rows[0]
    return None if first is None else ForecastWindow(first, last)
