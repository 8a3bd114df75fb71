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
    "ForecastSlot",
    "TimeframeFreshness",
    "data_freshness",
    "forecast_slots",
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
        SELECT DISTINCT ON (symbol, model_name, timeframe) symbol, model_name, timeframe, as_of, generated_at
        FROM ml_predictions
        WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
        ORDER BY symbol, model_name, timeframe, as_of DESC"""
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
            SELECT max(as_of), max(generated_at), count(*) FROM (
                SELECT DISTINCT ON (symbol, model_name) as_of, generated_at FROM ml_predictions
                WHERE timeframe = %(timeframe)s ORDER BY symbol, model_name, as_of DESC) newest"""
        _, forecast_rows = read_rows(bind, forecast_sql, {"timeframe": timeframe})
        (newest_ts, n_symbols), (newest_as_of, newest_generated, n_slots) = candle_rows[0], forecast_rows[0]
        out[timeframe] = TimeframeFreshness(
            timeframe, newest_ts, int(n_symbols), newest_as_of, newest_generated, int(n_slots)
        )
    return out
