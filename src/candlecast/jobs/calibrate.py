"""Calibration of fresh forecasts before they are written: which band each one serves.

The batch job hands every forecast of a slot to ``calibrate_predictions`` between "the forecasts came back"
and "the rows are written" (replays run the batch job, so they calibrate as they go, as production does).
This module owns the step from the store's history of a model's past forecasts
(``store.predictions.calibration_history``) to the maths of ``candlecast.calibration`` and back to the row:

- ``p10``/``p90``: the calibrated band (conformal quantile tracking with an integrator pooled over the steps up
  to each step, per instrument, timeframe, model and horizon step, on volatility-scaled two-sided scores, or
  per side with ``sides``; docs/calibration.md), ``p50`` unchanged;
- ``samples``: each path stretched about the step's median so the samples' p10/p90 are the calibrated band;
  ``samples_high``/``samples_low`` (OHLC paths) moved by the same per-step, per-side map, so touch questions on
  highs and lows are asked on the calibrated scale (the map never decreases: highs stay above their closes);
- ``p10_raw``/``p90_raw``: the model's own band;
- ``calibration``: how the band was reached (per step the nominal miss rate, each side's shift and pooled
  integrator, and the outcomes used; the settings; the volatility) or why it was not (``too few outcomes``,
  ``off``, ...).

No look-ahead: a forecast of slot ``t`` uses only forecasts made before ``t`` and their steps whose candle had
closed by ``t``, and candles closed by ``t``. It reads forecasts and candles, never scores, so it does not
depend on whether scoring has run. With ``jobs.calibrate`` off the model's band is served and recorded as
both. A calibration that fails (e.g. the history cannot be read) serves the model's band, records the error
in ``calibration`` and logs a warning: the forecast itself is still written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from candlecast.calibration import (
    CalibrationParams,
    PastOutcomes,
    calibrate_band,
    ewma_volatility,
    sample_centre,
    stretch_map,
)
from candlecast.config import CalibrationSettings, Settings
from candlecast.store.candles import timeframe_delta
from candlecast.store.predictions import CalibrationHistory, Prediction, calibration_history

__all__ = ["calibrate_one", "calibrate_predictions"]

log = logging.getLogger(__name__)

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # the store's raw timestamps count microseconds from here
_TWO_SIDED_SCORE = "max(p10_raw - y, y - p90_raw) / (last_close * sigma)"
_SIDE_SCORES = {"p10": "(p10_raw - y) / (last_close * sigma)", "p90": "(y - p90_raw) / (last_close * sigma)"}


def calibrate_predictions(settings: Settings, engine: Engine, predictions: Sequence[Prediction]) -> list[Prediction]:
    """The forecasts to write, in the order given: each with its served band, stretched samples, raw band and
    ``calibration`` record (see the module docstring). One history read per (timeframe, model, slot)."""
    if not settings.jobs.calibrate:
        return [_served_raw(p, {"status": "off"}) for p in predictions]
    cfg = settings.jobs.calibration
    out = list(predictions)
    slots: dict[tuple[str, str, datetime], list[int]] = {}
    for i, p in enumerate(predictions):
        slots.setdefault((p.timeframe, p.model_name, p.as_of), []).append(i)
    for (timeframe, model, as_of), members in slots.items():
        symbols = list(dict.fromkeys(predictions[i].symbol for i in members))
        try:
            back = math.ceil(5 * cfg.halflife) + 1  # the candles one volatility looks at
            history = calibration_history(engine, timeframe, model, as_of, symbols, cfg.lookback, back)
        except Exception as exc:  # a forecast is still written; its record says why it serves the raw band
            log.warning("calibration history of %s %s at %s unavailable: %s", model, timeframe, as_of, exc)
            for i in members:
                out[i] = _served_raw(predictions[i], _error(exc))
            continue
        for i in members:
            p = predictions[i]
            try:
                out[i] = calibrate_one(p, history[p.symbol], cfg)
            except Exception as exc:
                log.warning("calibration of %s %s %s at %s failed: %s", p.symbol, model, timeframe, as_of, exc)
                out[i] = _served_raw(p, _error(exc))
    return out


def calibrate_one(p: Prediction, history: CalibrationHistory, cfg: CalibrationSettings) -> Prediction:
    """``p`` (its band taken as the model's own) calibrated from ``history``, the outcomes known at its slot."""
    raw_lower = p.p10 if p.p10_raw is None else p.p10_raw
    raw_upper = p.p90 if p.p90_raw is None else p.p90_raw
    candle_us = timeframe_delta(p.timeframe) // timedelta(microseconds=1)
    slot_us = (p.as_of - _PG_EPOCH) // timedelta(microseconds=1)
    origins = np.unique(history.origin)
    # the volatility known at each past origin and at this slot: candles closed by then
    sigma = ewma_volatility(history.candle_ts, history.candle_close, np.r_[origins, slot_us] - candle_us, cfg.halflife)
    sigma_past = sigma[:-1][np.searchsorted(origins, history.origin)]
    past = PastOutcomes(
        step=history.step,
        realised_at=history.target_ts,
        observed=history.realised,
        raw_lower=history.raw_lower,
        raw_upper=history.raw_upper,
        served_lower=history.served_lower,
        served_upper=history.served_upper,
        scale=history.last_close * sigma_past,
        governed=history.governed,
    )
    samples = p.samples
    # the band never crosses the median, nor the middle of the samples (which the stretch keeps in place)
    inner_lower, inner_upper = p.p50, p.p50
    if samples is not None and samples.shape[0] >= 3:
        middle_low, middle_high = sample_centre(samples)
        inner_lower, inner_upper = np.minimum(p.p50, middle_low), np.maximum(p.p50, middle_high)
    params = CalibrationParams(
        alpha=cfg.alpha, gamma=cfg.gamma, window=cfg.window, min_outcomes=cfg.min_outcomes,
        min_outcomes_per_h=cfg.min_outcomes_per_h, sides=cfg.sides, memory=cfg.memory,
    )  # fmt: skip
    sigma_now = float(sigma[-1])
    band = calibrate_band(
        raw_lower, raw_upper, p.last_close * sigma_now, past, params,
        inner_lower=inner_lower, inner_upper=inner_upper,
    )  # fmt: skip
    calibrated = band.calibrated
    highs, lows = p.samples_high, p.samples_low
    if (
        calibrated.any()
        and samples is not None
        and (stretch := stretch_map(samples, band.lower, band.upper, calibrated))
    ):
        # the closes, and the highs and lows of the same paths by the same per-step, per-side map
        samples = stretch.apply(samples)
        highs = None if highs is None else stretch.apply(highs)
        lows = None if lows is None else stretch.apply(lows)
    if not np.isfinite(sigma_now) or sigma_now <= 0:
        status = "no volatility"
    elif calibrated.all():
        status = "calibrated"
    else:
        status = "partial" if calibrated.any() else "too few outcomes"
    record: dict[str, Any] = {
        "status": status,
        "method": "quantile-tracking per side" if cfg.sides else "quantile-tracking",  # integrator pooled over 1..h
        "score": _SIDE_SCORES if cfg.sides else _TWO_SIDED_SCORE,
        "alpha": cfg.alpha,  # per side: alpha / 2 on each
        "gamma": cfg.gamma,  # integrator gain; step k's misses count gamma / k
        "memory": cfg.memory,  # the integrator's half-life in candles (None: no forgetting)
        "window": cfg.window,
        "min_outcomes": cfg.min_outcomes,
        "min_outcomes_per_h": cfg.min_outcomes_per_h,
        "halflife": cfg.halflife,
        "sigma": _number(sigma_now),
        "forecasts_read": len(origins),
        "steps_calibrated": int(calibrated.sum()),
        "steps": {
            "alpha": _numbers(band.alpha),
            "q_lower": _numbers(band.q_lower),
            "q_upper": _numbers(band.q_upper),
            "drift_lower": _numbers(band.drift_lower),
            "drift_upper": _numbers(band.drift_upper),
            "n_outcomes": band.n_outcomes.tolist(),
        },
    }
    return replace(
        p, p10=band.lower, p90=band.upper, samples=samples, samples_high=highs, samples_low=lows, p10_raw=raw_lower,
        p90_raw=raw_upper, calibration=record,
    )  # fmt: skip


def _served_raw(p: Prediction, record: dict[str, Any]) -> Prediction:
    """``p`` serving the model's own band, recorded as both served and raw."""
    raw_lower = p.p10 if p.p10_raw is None else p.p10_raw
    raw_upper = p.p90 if p.p90_raw is None else p.p90_raw
    return replace(p, p10=raw_lower, p90=raw_upper, p10_raw=raw_lower, p90_raw=raw_upper, calibration=record)


def _error(exc: Exception) -> dict[str, Any]:
    return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _numbers(values: np.ndarray) -> list[float | None]:
    return [_number(v) for v in values.tolist()]
