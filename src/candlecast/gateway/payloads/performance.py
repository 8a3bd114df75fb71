"""How past forecasts scored: rows of ``signal_performance`` and the calibration summary (``/api/v1/performance``,
the ``get_performance`` MCP tool and the evaluation page).

A symbol or model that is not stored is a ``NotFoundError`` listing those that are (an empty answer would read as
"not scored yet"). Rows (the all-steps rows of the window) carry the instrument's ``name`` and the track-record
``verdict`` (``payloads.track``); the calibration summary covers the same window; ``period`` is the evaluation
period, the oldest and newest forecast origin of the rows. The data status is that of the newest scored forecast.
Asked for one series (a symbol, a model and a timeframe), ``by_step`` holds its scores per horizon step in the
window (``payloads.track.step_record``: columns, one entry per step); null otherwise.

``path_scores``: per (model, timeframe), how the touch probabilities of its paths scored on the graded questions
of the window (docs/paths.md, "Scored like forecasts"): fair Brier score against the random walk's, skill, a
Diebold–Mariano p-value and the same plain verdict as the CRPS rows, the base rate, and the reliability table
(predicted against observed touch frequency, with counts). The scoring job computes them
(``path_performance``, ``jobs.touches.refresh_path_performance``), for the symbol asked or every symbol; this
module only adds the verdict, which depends on the gateway's settings.
"""

from __future__ import annotations

import decimal
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.errors import NotFoundError
from candlecast.gateway.params import PerformanceParams
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import data_status, floats, iso
from candlecast.gateway.payloads.track import NOMINAL_COVERAGE, step_record, verdict
from candlecast.store.candles import get_instruments
from candlecast.store.path_evaluations import PathPerformanceRow, path_performance
from candlecast.store.performance import ALL_STEPS, CalibrationRow, PerformanceRow, calibration, performance
from candlecast.store.status import forecast_slots

__all__ = ["NOMINAL_COVERAGE", "performance_payload"]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float | decimal.Decimal):
        return floats([value])[0]
    return value


def _row(row: PerformanceRow, names: dict[str, str | None], gw: GatewaySettings) -> dict[str, Any]:
    out = {name: _json_value(value) for name, value in row.__dict__.items()}
    out["name"] = names.get(row.symbol)
    out["verdict"] = verdict(
        row.n_predictions, out["crps_skill"], out["dm_pvalue"], gw.track_record_min_scored, gw.track_record_alpha
    )
    return out


def _calibration(c: CalibrationRow) -> dict[str, Any]:
    out = {name: _json_value(value) for name, value in c.__dict__.items()}
    return {**out, "nominal": [0.1, 0.5, 0.9], "observed": [out["below_p10"], out["below_p50"], out["below_p90"]]}


_RELIABILITY = ("lower", "upper", "count", "mean_predicted", "observed")
_DECOMPOSITION = ("reliability", "resolution", "uncertainty", "base_rate")


def _path_score(row: PathPerformanceRow, gw: GatewaySettings) -> dict[str, Any]:
    skill, pvalue = floats([row.skill, row.dm_pvalue])
    return {
        "model_name": row.model_name,
        "timeframe": row.timeframe,
        "forecasts": row.forecasts,
        "questions": row.questions,
        "grid": list(row.grid),
        "uses": {name: row.uses[name] for name in ("ohlc", "close") if name in row.uses},
        "brier": floats([row.brier])[0],
        "brier_plain": floats([row.brier_plain])[0],
        "brier_rw": floats([row.brier_rw])[0],
        "skill": skill,
        "dm_pvalue": pvalue,
        "verdict": verdict(row.forecasts, skill, pvalue, gw.track_record_min_scored, gw.track_record_alpha),
        "base_rate": floats([row.base_rate])[0],
        "reliability": {
            name: [int(n) for n in row.reliability[name]] if name == "count" else floats(row.reliability[name])
            for name in _RELIABILITY
        },
        "decomposition": {name: floats([row.decomposition.get(name)])[0] for name in _DECOMPOSITION},
    }


def performance_payload(engine: Engine, params: PerformanceParams, gw: GatewaySettings) -> Payload:
    symbol, model, timeframe, window = params
    instruments = get_instruments(engine)
    names = {i.symbol: i.name for i in instruments}
    if symbol is not None and symbol not in names:
        raise NotFoundError("symbol", f"unknown symbol {symbol!r}", sorted(names))
    if model is not None:
        models = sorted({s.model_name for s in forecast_slots(engine)})
        if model not in models:
            raise NotFoundError("model_name", f"no forecast by model {model!r} is stored", models)
    one_series = symbol is not None and model is not None and timeframe is not None
    steps = None if one_series else ALL_STEPS  # None: every step's rows
    every_step = performance(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window, step=steps)
    rows = [r for r in every_step if r.step == ALL_STEPS]
    calib = calibration(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    touches = path_performance(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    newest = max((t for r in rows if (t := r.last_as_of) is not None), default=None)
    oldest = min((t for r in rows if (t := r.first_as_of) is not None), default=None)
    return {
        "symbol": symbol,
        "model_name": model,
        "timeframe": timeframe,
        "window": window,
        "nominal_coverage": NOMINAL_COVERAGE,
        "period": {"first_as_of": iso(oldest), "last_as_of": iso(newest)},
        "rows": [_row(r, names, gw) for r in rows],
        "by_step": step_record(every_step) if one_series else None,
        "calibration": [_calibration(c) for c in calib],
        "path_scores": [_path_score(g, gw) for g in touches],
        **data_status(newest, gw.replay_after_h),
        "stale": False,
    }
