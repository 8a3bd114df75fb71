"""Reads of the forecast scores: the ``signal_performance`` view and a calibration summary.

``signal_performance`` (refreshed by the scoring job) holds per (symbol, timeframe, model, window) the
hit rate, the p10–p90 coverage (nominal 80%), mean CRPS and Sharpe. ``calibration`` summarises
``signal_evaluations`` directly: for a calibrated forecast the realised close falls below its p10, p50
and p90 in 10%, 50% and 90% of the scored steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import read_rows

__all__ = ["PERFORMANCE_WINDOWS", "CalibrationRow", "PerformanceRow", "calibration", "performance"]

PERFORMANCE_WINDOWS: tuple[str, ...] = ("all", "trailing_30d")


@dataclass(frozen=True)
class PerformanceRow:
    symbol: str
    timeframe: str
    model_name: str
    window_name: str
    n_predictions: int
    n_steps: int
    hit_rate: float | None
    coverage: float | None  # share of scored steps with p10 <= realised <= p90
    mean_crps: float | None
    mean_pinball: float | None
    mean_strategy_return: float | None
    sharpe: float | None
    first_as_of: datetime | None
    last_as_of: datetime | None
    refreshed_from: datetime | None  # newest scoring time included in the view


@dataclass(frozen=True)
class CalibrationRow:
    model_name: str
    timeframe: str
    n_steps: int
    below_p10: float  # share of scored steps whose realised close is below p10 (nominal 0.1)
    below_p50: float  # nominal 0.5
    below_p90: float  # nominal 0.9
    in_band: float  # share inside [p10, p90] (nominal 0.8)


def performance(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: str | None = "all",
) -> list[PerformanceRow]:
    """Rows of ``signal_performance``, filtered by whichever arguments are given (None = any)."""
    if window is not None and window not in PERFORMANCE_WINDOWS:
        raise ValueError(f"window must be one of {PERFORMANCE_WINDOWS}, found {window!r}")
    sql = """
        SELECT symbol, timeframe, model_name, window_name, n_predictions, n_steps, hit_rate, coverage,
            mean_crps, mean_pinball, mean_strategy_return, sharpe, first_as_of, last_as_of, refreshed_from
        FROM signal_performance
        WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
          AND (%(model)s::text IS NULL OR model_name = %(model)s)
          AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
          AND (%(window)s::text IS NULL OR window_name = %(window)s)
        ORDER BY symbol, timeframe, model_name, window_name"""
    params = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "window": window}
    names, rows = read_rows(bind, sql, params)
    return [PerformanceRow(**dict(zip(names, row, strict=True))) for row in rows]


def calibration(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
) -> list[CalibrationRow]:
    """Per (model, timeframe): how often the realised close fell below each stored quantile."""
    sql = """
        SELECT model_name, timeframe, count(*) AS n_steps,
            avg((realised_close < p10)::int)::float8 AS below_p10,
            avg((realised_close < p50)::int)::float8 AS below_p50,
            avg((realised_close < p90)::int)::float8 AS below_p90,
            avg(in_band::int)::float8 AS in_band
        FROM signal_evaluations
        WHERE (%(symbol)s::text IS NULL OR symbol = %(symbol)s)
          AND (%(model)s::text IS NULL OR model_name = %(model)s)
          AND (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s)
        GROUP BY model_name, timeframe
        ORDER BY model_name, timeframe"""
    params = {"symbol": symbol, "model": model_name, "timeframe": timeframe}
    names, rows = read_rows(bind, sql, params)
    return [CalibrationRow(**dict(zip(names, row, strict=True))) for row in rows]
