"""How past forecasts scored: rows of ``signal_performance`` and the calibration summary (``/api/v1/performance``,
the ``get_performance`` MCP tool and the evaluation page)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from candlecast.gateway.params import PerformanceParams
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import floats, iso
from candlecast.store.performance import CalibrationRow, PerformanceRow, calibration, performance

__all__ = ["NOMINAL_COVERAGE", "performance_payload"]

NOMINAL_COVERAGE = 0.8  # p10..p90


def _row(row: PerformanceRow) -> dict[str, Any]:
    out = dict(row.__dict__)
    for name in ("first_as_of", "last_as_of", "refreshed_from"):
        out[name] = iso(out[name])
    for name in ("hit_rate", "coverage", "mean_crps", "mean_pinball", "mean_strategy_return", "sharpe"):
        out[name] = floats([out[name]])[0]
    return out


def _calibration(c: CalibrationRow) -> dict[str, Any]:
    return {**c.__dict__, "nominal": [0.1, 0.5, 0.9], "observed": [c.below_p10, c.below_p50, c.below_p90]}


def performance_payload(engine: Engine, params: PerformanceParams) -> Payload:
    symbol, model, timeframe, window = params
    rows = performance(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    calib = calibration(engine, symbol=symbol, model_name=model, timeframe=timeframe)
    return {
        "window": window,
        "nominal_coverage": NOMINAL_COVERAGE,
        "rows": [_row(r) for r in rows],
        "calibration": [_calibration(c) for c in calib],
        "stale": False,
    }
