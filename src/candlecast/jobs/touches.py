"""Grading the touch questions of past forecasts (docs/paths.md, "Scored like forecasts"); the scoring job runs it.

Once every candle of a forecast's horizon ``H`` is in, it is asked, for each ``k`` of ``paths.TOUCH_GRID`` (±1, ±2,
±3): "is ``level_k = c0 exp(k sigma sqrt(H))`` touched by the horizon?" (from above for ``k > 0``, from below for
``k < 0``), where ``c0`` is its last close and ``sigma`` the random walk's one-candle volatility: the sample std
(ddof 1) of the 60 log returns of the candles closed by its origin (``scores.log_return_volatility``, the same
sigma as the CRPS reference). The grid is known at the origin (no look-ahead) and the same for every model of
the slot, so models answer the same questions. Then:

- ``p_touch``: the share of the forecast's stored (served, calibrated) paths that touch the level, on their
  highs and lows where the forecast has OHLC paths and the realised candles have highs and lows (``uses =
  'ohlc'``), else on closes (``'close'``);
- ``touched``: whether the realised candles did, judged on the same basis;
- ``p_touch_rw``: the random walk's probability (``paths.random_walk_touch``: ``2 Phi(-|k|)`` on highs/lows,
  with the discrete-monitoring correction on closes).

A forecast without samples, or with fewer than 20 returns behind it (no sigma), is skipped and counted; so is
one whose horizon passed with a candle missing. All of it is numpy over (forecasts, paths, levels) blocks.

``refresh_path_performance`` (run after scoring, beside ``jobs.scoring.refresh_performance``) recomputes the
stored summary the evaluation page and ``GET /api/v1/performance`` show (``path_performance``): per (scope, model,
timeframe, window), ``touch_summary`` of the questions ``store.path_evaluations.graded_touches`` reads for that
symbol (or every symbol, scope ``'*'``) and window, from one read of the timeframe's grades.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from candlecast.paths import TOUCH_GRID, random_walk_touch, touch_levels, touch_probabilities, touch_scores
from candlecast.scores import log_return_volatility_by_series
from candlecast.store._copy import pg_datetime
from candlecast.store.candles import timeframe_delta
from candlecast.store.db import snapshot
from candlecast.store.path_evaluations import (
    ALL_SYMBOLS,
    ForecastToGrade,
    GradedTouches,
    graded_touches_by_symbol,
    lock_path_performance,
    replace_path_performance,
)
from candlecast.store.performance import PERFORMANCE_WINDOWS
from candlecast.store.schema import TIMEFRAMES

__all__ = ["TouchGrades", "grade_touches", "refresh_path_performance", "touch_sigma", "touch_summary"]


@dataclass
class TouchGrades:
    """Grades ready for ``store.path_evaluations.write_path_evaluations`` and what could not be graded."""

    columns: dict[str, np.ndarray]
    graded: list[ForecastToGrade] = field(default_factory=list)
    skipped_no_samples: int = 0
    skipped_no_volatility: int = 0


def touch_sigma(
    forecasts: list[ForecastToGrade], history: dict[str, tuple[np.ndarray, np.ndarray]], timeframe: str
) -> np.ndarray:
    """Per forecast, the random walk's one-candle sigma at its origin, from ``history``
    (``store.evaluations.closes_before``: raw Postgres timestamps and closes); NaN without enough returns."""
    candle = timeframe_delta(timeframe)
    symbols = np.array([f.symbol for f in forecasts], dtype=object)
    cutoffs = np.array([_raw(f.as_of - candle) for f in forecasts], dtype=np.int64)
    return log_return_volatility_by_series(history, symbols, cutoffs)


def grade_touches(forecasts: list[ForecastToGrade], sigma: np.ndarray) -> TouchGrades:
    """The grid's questions asked of ``forecasts`` (``sigma``: ``touch_sigma``), graded; see the module docstring."""
    grid = np.asarray(TOUCH_GRID)
    above = grid > 0
    no_samples = [f.samples is None or f.samples.shape[0] < 1 for f in forecasts]
    no_sigma = [not (np.isfinite(s) and s > 0) for s in sigma]
    ready = [i for i, f in enumerate(forecasts) if not no_samples[i] and not no_sigma[i]]
    # forecasts with the same shape of paths and the same basis are graded together, one numpy block each
    blocks: dict[tuple[tuple[int, ...], bool], list[int]] = {}
    for i in ready:
        f = forecasts[i]
        assert f.samples is not None
        blocks.setdefault((f.samples.shape, _ohlc(f)), []).append(i)
    parts: list[dict[str, np.ndarray]] = []
    for (shape, ohlc), members in blocks.items():
        chosen = [forecasts[i] for i in members]
        closes = np.stack([f.samples for f in chosen])  # type: ignore[misc]  # (F, M, H)
        horizon = np.full(len(chosen), shape[1])
        levels = touch_levels(np.array([f.last_close for f in chosen]), sigma[members], horizon)
        realised = np.stack([f.realised_close for f in chosen])[:, None, :]  # (F, 1, H)
        if ohlc:
            highs = np.stack([f.samples_high for f in chosen])  # type: ignore[misc]
            lows = np.stack([f.samples_low for f in chosen])  # type: ignore[misc]
            p, basis = touch_probabilities(closes, levels, above, highs, lows)
            touched, _ = touch_probabilities(
                realised, levels, above,
                np.stack([f.realised_high for f in chosen])[:, None, :],  # type: ignore[misc]
                np.stack([f.realised_low for f in chosen])[:, None, :],  # type: ignore[misc]
            )  # fmt: skip
        else:
            p, basis = touch_probabilities(closes, levels, above)
            touched, _ = touch_probabilities(realised, levels, above)
        p_rw = random_walk_touch(grid, np.full(len(grid), shape[1]), basis)
        n, k = p.shape
        parts.append({
            "prediction_id": np.repeat([f.prediction_id for f in chosen], k),
            "k": np.tile(grid, n), "horizon": np.full(n * k, shape[1]), "level": levels.ravel(),
            "side": np.tile(np.where(above, "above", "below"), n), "p_touch": p.ravel(),
            "p_touch_rw": np.tile(p_rw, n), "paths": np.full(n * k, shape[0]), "touched": touched.ravel() > 0.5,
            "uses": np.full(n * k, "ohlc" if ohlc else "close"),
        })  # fmt: skip
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]} if parts else _empty()
    return TouchGrades(
        columns=columns,
        graded=[forecasts[i] for i in ready],
        skipped_no_samples=sum(no_samples),
        skipped_no_volatility=sum(1 for i in range(len(forecasts)) if no_sigma[i] and not no_samples[i]),
    )


def touch_summary(g: GradedTouches) -> dict[str, Any]:
    """How the graded questions ``g`` scored (``paths.touch_scores``, the Diebold–Mariano lags from the longest
    horizon among them), as a ``path_performance`` row without its labels: JSON-ready, NaN as None."""
    score = touch_scores(g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max()))
    table = score.reliability
    return {
        "forecasts": score.forecasts, "questions": score.questions, "grid": list(TOUCH_GRID), "uses": g.uses,
        "brier": _finite(score.brier), "brier_plain": _finite(score.brier_plain), "brier_rw": _finite(score.brier_rw),
        "skill": _finite(score.skill), "dm_stat": _finite(score.dm_stat), "dm_pvalue": _finite(score.dm_pvalue),
        "base_rate": _finite(score.base_rate),
        "reliability": {
            "lower": _finites(table["lower"]), "upper": _finites(table["upper"]),
            "count": [int(n) for n in table["count"]], "mean_predicted": _finites(table["mean_predicted"]),
            "observed": _finites(table["observed"]),
        },
        "decomposition": {name: _finite(value) for name, value in score.decomposition.items()},
        "first_as_of": pg_datetime(int(g.as_of.min())), "last_as_of": pg_datetime(int(g.as_of.max())),
    }  # fmt: skip


def refresh_path_performance(engine: Engine, timeframe: str | None = None) -> int:
    """Recompute the ``path_performance`` rows of ``timeframe`` (None: every timeframe) from all its graded
    questions: per model, the summary (``touch_summary``) of every symbol together (scope ``'*'``) and of each
    symbol, in each window of ``store.performance.PERFORMANCE_WINDOWS``; the same questions
    ``store.path_evaluations.graded_touches`` reads for that symbol and window, so the rows equal a summary
    computed on request.

    Each timeframe in one REPEATABLE READ transaction that first takes the table's refresh lock: readers see the
    previous rows until it commits, two refreshes never interleave, and the rows come from one snapshot of the
    grades (a (model, timeframe) with none left loses its rows). Returns the rows written."""
    written = 0
    for tf in TIMEFRAMES if timeframe is None else (timeframe,):
        with snapshot(engine) as conn:
            lock_path_performance(conn)  # before the first query, which takes the snapshot
            rows = []
            for graded in graded_touches_by_symbol(conn, tf):
                rows += _summary_rows(graded)
            written += replace_path_performance(conn, tf, rows)
    return written


def _summary_rows(g: GradedTouches) -> list[dict[str, Any]]:
    """The rows of one (model, timeframe): every scope with questions, both windows."""
    assert g.symbol is not None and g.recent is not None, "graded_touches_by_symbol gives symbols and windows"
    rows = []
    scopes = [(ALL_SYMBOLS, None)] + [(name, g.symbol == code) for code, name in enumerate(g.symbols)]
    for scope, mine in scopes:
        for window in PERFORMANCE_WINDOWS:
            mask = g.recent if window == "trailing_30d" else None
            if mine is not None:
                mask = mine if mask is None else mine & mask
            part = g if mask is None else g.subset(mask)
            if len(part):
                labels = {"scope": scope, "model_name": g.model_name, "window_name": window}
                rows.append({**labels, **touch_summary(part)})
    return rows


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _finites(values: np.ndarray) -> list[float | None]:
    return [_finite(v) for v in values.tolist()]


def _ohlc(f: ForecastToGrade) -> bool:
    """Whether the forecast's touches are judged on highs and lows: OHLC paths and realised highs/lows."""
    return (
        f.samples_high is not None
        and f.samples_low is not None
        and f.realised_high is not None
        and f.realised_low is not None
        and f.samples is not None
        and f.samples_high.shape == f.samples.shape == f.samples_low.shape
    )


def _raw(when: datetime) -> int:
    """A timezone-aware datetime as a raw Postgres timestamp (microseconds since 2000-01-01 UTC)."""
    return (when - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _empty() -> dict[str, np.ndarray]:
    names = ("prediction_id", "k", "horizon", "level", "side", "p_touch", "p_touch_rw", "paths", "touched", "uses")
    return {name: np.zeros(0) for name in names}
