"""How past forecasts scored: rows of ``signal_performance`` and the calibration summary (``/api/v1/performance``,
the ``get_performance`` MCP tool and the evaluation page).

A symbol or model that is not stored is a ``NotFoundError`` listing those that are (an empty answer would read as
"not scored yet"). Rows (the all-steps rows of the window) carry the instrument's ``name`` and the track-record
``verdict`` (``payloads.track``); the calibration summary covers the same window; ``period`` is the evaluation
period, the oldest and newest forecast origin of the rows. The data status is that of the newest scored forecast.

``path_scores``: per (model, timeframe), how the touch probabilities of its paths scored on the graded questions
of the window (``store.path_evaluations``; docs/paths.md, "Scored like forecasts"): fair Brier score against the
random walk's, skill, a Diebold–Mariano p-value and the same plain verdict as the CRPS rows, the base rate, and
the reliability table (predicted against observed touch frequency, with counts).
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
from candlecast.gateway.payloads.track import NOMINAL_COVERAGE, verdict
from candlecast.paths import TOUCH_GRID, touch_scores
from candlecast.store.candles import get_instruments
from candlecast.store.path_evaluations import GradedTouches, graded_touches
from candlecast.store.performance import CalibrationRow, PerformanceRow, calibration, performance
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


def _path_score(g: GradedTouches, gw: GatewaySettings) -> dict[str, Any]:
    score = touch_scores(g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max()))
    table = score.reliability
    skill, pvalue = floats([score.skill, score.dm_pvalue])
    return {
        "model_name": g.model_name,
        "timeframe": g.timeframe,
        "forecasts": score.forecasts,
        "questions": score.questions,
        "grid": list(TOUCH_GRID),
        "uses": g.uses,
        "brier": floats([score.brier])[0],
        "brier_plain": floats([score.brier_plain])[0],
        "brier_rw": floats([score.brier_rw])[0],
        "skill": skill,
        "dm_pvalue": pvalue,
        "verdict": verdict(score.forecasts, skill, pvalue, gw.track_record_min_scored, gw.track_record_alpha),
        "base_rate": floats([score.base_rate])[0],
        "reliability": {
            "lower": floats(table["lower"].tolist()), "upper": floats(table["upper"].tolist()),
            "count": [int(n) for n in table["count"]], "mean_predicted": floats(table["mean_predicted"].tolist()),
            "observed": floats(table["observed"].tolist()),
        },
        "decomposition": {name: floats([value])[0] for name, value in score.decomposition.items()},
    }  # fmt: skip


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
    rows = performance(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    calib = calibration(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
    touches = graded_touches(engine, symbol=symbol, model_name=model, timeframe=timeframe, window=window)
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
        "calibration": [_calibration(c) for c in calib],
        "path_scores": [_path_score(g, gw) for g in touches],
        **data_status(newest, gw.replay_after_h),
        "stale": False,
    }
