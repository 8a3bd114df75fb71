"""Conformal calibration of a forecast's p10–p90 band that adapts as outcomes come in, pure numpy.

The batch job (``jobs.calibrate``) reads a model's past forecasts and what happened, and asks this module for
the band to serve. Nothing here touches the store.

Method (per instrument, timeframe, model and horizon step ``h``: conformal quantile tracking with an integrator
pooled over the steps up to ``h``, by default on one two-sided score, so the band is widened or narrowed by the
same amount on both sides; ``sides=True`` tracks p10 and p90 each at ``alpha / 2`` instead, and ``memory`` makes
the integrator forget; docs/calibration.md has what each measured):

- **Scale.** ``scale = c0 * sigma``: the last close times the EWMA volatility of the instrument's log returns
  known at the forecast origin (``ewma_volatility``). It is not multiplied by ``sqrt(h)``: every step is
  calibrated on its own, so a constant factor per step would cancel out of the band.
- **Scores** of a past forecast with realised close ``y`` and raw (the model's own) band ``[l, u]``: per side
  ``(l - y) / scale`` below and ``(y - u) / scale`` above; the two-sided score is their maximum. Signed:
  negative inside the band, so a band that is too wide shrinks as well as one that is too narrow widens.
- **Quantile tracking with an integrator** (conformal PID without its scorecaster, Angelopoulos, Candès &
  Tibshirani 2023). ``q_h = Q_h + B_h * d_h``: ``Q_h`` the conformal ``(1 - a)`` quantile (``a = alpha``
  two-sided, ``alpha / 2`` per side) of the most recent ``window`` scores of step ``h`` (the
  ``ceil((n + 1)(1 - a))``-th smallest of ``n``), ``B_h`` their spread (the 0.9 minus the 0.1 order statistic),
  so the integrator moves the band in units of the score, and ``d_h`` the integrator: per step ``k``,
  ``e_k = (gamma / k) * sum_j w_j (err_j - a)`` over the known outcomes of step ``k`` whose served band
  calibration had set (``err_j = 1`` when ``y_j`` fell outside the band that was served, or beyond the side
  tracked), and ``d_h`` the mean of ``e_1 .. e_h``. Dividing by ``k``: forecasts made one candle apart share
  ``k - 1`` of their ``k`` candles, so one shock misses about ``k`` of them in a row and moves ``e_k`` by about
  ``gamma``. Pooling the steps up to ``h``: the short steps' outcomes come back first (step 1 the next candle),
  so a long step learns from a regime change before its own outcomes return. ``w_j`` is 1, or with ``memory``
  ``0.5 ** (age_j / memory)`` (``memory_weights``). Unlike ACI's level, the correction is not capped by the
  largest score in the window.
- **Band.** ``[l - q_lower * scale, u + q_upper * scale]`` (the same ``q`` on both sides when two-sided), never
  past the inner bounds (the median): a side never crosses the centre of the forecast.

Step ``h`` needs ``max(min_outcomes, min_outcomes_per_h * h)`` realised scores (overlapping outcomes carry
about ``n / h`` independent ones); with fewer it keeps the raw band (``calibrated`` is False, alpha and the
shifts are NaN); a step left raw has no outcomes of a calibrated band, so it adds 0 to the pooled integrator.

``stretch_samples`` then maps each sample path onto the calibrated band, step by step: values below the
middle of the samples are scaled about it by one factor, values above by another, so the median stays and
``np.quantile`` (linear) of the new samples at 0.1 and 0.9 equals the calibrated band. The same map, step by
step (``stretch_map``), moves the paths' highs and lows where the model gives OHLC paths: it never decreases,
so a high stays at or above its close and a low at or below it. ``unstretch_samples`` undoes it from what a stored
row holds (the served paths, the served and the raw band): the ensemble mixes its members' own paths with it, so
that it is calibrated once, on its own outcomes, and not on top of its members' calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BandCalibration",
    "CalibrationParams",
    "PastOutcomes",
    "Stretch",
    "calibrate_band",
    "conformal_quantile",
    "ewma_volatility",
    "memory_weights",
    "sample_centre",
    "stretch_map",
    "stretch_samples",
    "tracking_integrator",
    "unstretch_samples",
]


@dataclass(frozen=True)
class CalibrationParams:
    alpha: float = 0.2  # nominal miss rate of the band: alpha / 2 below p10, alpha / 2 above p90
    gamma: float = 0.1  # integrator gain per miss at step 1 (in units of the score spread); step k uses gamma / k
    window: int = 500  # most recent scores per step in the quantile
    min_outcomes: int = 20  # fewer scores at a step: the step is left raw ...
    min_outcomes_per_h: int = 5  # ... or fewer than this many times h
    sides: bool = False  # True: p10 and p90 tracked each at alpha / 2 (False: one two-sided score at alpha)
    memory: float | None = None  # the integrator's half-life, in candles of outcomes; None: it never forgets


@dataclass(frozen=True)
class PastOutcomes:
    """Realised steps of past forecasts of one series, one entry per (forecast, step), in any order.

    Only outcomes known when the new forecast is made may be given (the caller's job; see ``jobs.calibrate``).
    """

    step: np.ndarray  # int, 1-based horizon step
    realised_at: np.ndarray  # sortable (e.g. int64 time): when the outcome became known; orders the window
    observed: np.ndarray  # realised close
    raw_lower: np.ndarray  # the model's own p10 and p90
    raw_upper: np.ndarray
    served_lower: np.ndarray  # the band that was served (the raw one where nothing calibrated it)
    served_upper: np.ndarray
    scale: np.ndarray  # last close * volatility at the forecast's origin; NaN = unknown (no score)
    governed: np.ndarray  # bool: calibration set the served band of that step

    def __len__(self) -> int:
        return len(self.step)

    @classmethod
    def empty(cls) -> PastOutcomes:
        f = np.zeros(0)
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), f, f, f, f, f, f, np.zeros(0, bool))


@dataclass(frozen=True)
class BandCalibration:
    """The band to serve at each step of one forecast, and how it was reached (NaN where not calibrated)."""

    lower: np.ndarray  # (H,)
    upper: np.ndarray
    alpha: np.ndarray  # the nominal miss rate of the band at calibrated steps
    q_lower: np.ndarray  # how far p10 moved down (negative: up), in units of scale: quantile plus integrator
    q_upper: np.ndarray  # how far p90 moved up (equal to q_lower when two-sided)
    n_outcomes: np.ndarray  # int: scores in the quantile (all realised ones when too few)
    drift_lower: np.ndarray  # the pooled integrators d_h of each side, in units of its score spread
    drift_upper: np.ndarray

    @property
    def calibrated(self) -> np.ndarray:
        """Per step: whether calibration set the band (False: raw band, too few outcomes or no scale)."""
        return ~np.isnan(self.q_lower)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The conformal ``level`` quantile of ``n`` scores: the ``ceil((n + 1) level)``-th smallest, clipped to
    the range ``1..n`` (the largest score when the rank exceeds ``n``, the smallest when ``level <= 0``)."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0:
        raise ValueError("no scores")
    rank = math.ceil((n + 1) * level - 1e-9)  # tolerance: (n + 1) * 0.9 must not round up past an integer
    k = min(max(rank, 1), n)
    return float(np.partition(s, k - 1)[k - 1])


def tracking_integrator(target: float, gamma: float, errors: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The integrator of one step after ``errors`` (booleans, each a miss of a band calibration set):
    ``gamma * sum(w * (err - target))``, ``w`` the ``weights`` (default 1); positive when the band missed more
    often than ``target``."""
    e = np.asarray(errors, dtype=np.float64)
    w = np.ones(len(e)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(gamma * (w * (e - target)).sum())


def memory_weights(realised_at: np.ndarray, halflife: float | None) -> np.ndarray:
    """Per outcome, its weight in the integrator: ``0.5 ** (age / halflife)``, ``age`` the number of distinct
    outcome times after its own (in candles, whatever the calendar: a weekend is no age). All 1 without
    ``halflife``."""
    t = np.asarray(realised_at)
    if halflife is None or not len(t):
        return np.ones(len(t))
    _, rank = np.unique(t, return_inverse=True)
    return np.asarray(0.5 ** ((rank.max() - rank) / halflife), dtype=np.float64)


def calibrate_band(
    raw_lower: np.ndarray,
    raw_upper: np.ndarray,
    scale: float,
    past: PastOutcomes,
    params: CalibrationParams,
    inner_lower: np.ndarray | None = None,
    inner_upper: np.ndarray | None = None,
) -> BandCalibration:
    """The calibrated band of one forecast with raw band ``[raw_lower, raw_upper]`` (H steps) and scale
    ``scale`` (last close * volatility at its origin), from the outcomes ``past`` (see the module docstring).

    ``inner_lower``/``inner_upper`` (default: the raw band's midpoint) bound the band from the inside: the
    served p10 is never above ``inner_lower`` nor the p90 below ``inner_upper``. A ``scale`` that is NaN or not
    positive leaves every step raw.
    """
    lo = np.asarray(raw_lower, dtype=np.float64)
    hi = np.asarray(raw_upper, dtype=np.float64)
    n_steps = len(lo)
    middle = (lo + hi) / 2
    inner_lo = middle if inner_lower is None else np.asarray(inner_lower, dtype=np.float64)
    inner_hi = middle if inner_upper is None else np.asarray(inner_upper, dtype=np.float64)

    step = np.asarray(past.step, dtype=np.int64)
    order = np.lexsort((np.asarray(past.realised_at), step))  # by step, then by when the outcome was known
    bounds = np.searchsorted(step[order], np.arange(1, n_steps + 2))
    rows_of = [order[bounds[h] : bounds[h + 1]] for h in range(n_steps)]
    y = np.asarray(past.observed, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        past_scale = np.asarray(past.scale, dtype=np.float64)
        below = (np.asarray(past.raw_lower) - y) / past_scale  # the score of each side: > 0 outside the raw band
        above = (y - np.asarray(past.raw_upper)) / past_scale
    usable = np.isfinite(below) & np.isfinite(above) & (past_scale > 0)
    governed = np.asarray(past.governed, dtype=bool)
    weight = memory_weights(past.realised_at, params.memory)
    scale_ok = math.isfinite(scale) and scale > 0
    missed_lower, missed_upper = y < np.asarray(past.served_lower), y > np.asarray(past.served_upper)
    # per step: its outcomes of a governed band (the integrator), and its most recent scores (the quantile)
    governed_of = [rows[governed[rows]] for rows in rows_of]
    window_of = [rows[usable[rows]][-params.window :] for rows in rows_of]
    counts = np.array([len(rows) for rows in window_of], dtype=np.int64)
    needed = np.maximum(params.min_outcomes, params.min_outcomes_per_h * np.arange(1, n_steps + 1))
    enough = scale_ok & (counts >= needed)

    def side(score: np.ndarray, missed: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
        """The shift per step (NaN where left raw) of the scores ``score`` at miss rate ``target``, and its
        pooled integrator."""
        own = np.array([
            tracking_integrator(target, params.gamma / (h + 1), missed[rows], weight[rows])
            for h, rows in enumerate(governed_of)
        ])  # fmt: skip
        drift = np.cumsum(own) / np.arange(1, n_steps + 1)  # pooled over steps 1..h
        q = np.full(n_steps, np.nan)
        for h in np.flatnonzero(enough):
            s = score[window_of[h]]
            spread = _order_statistic(s, 0.9) - _order_statistic(s, 0.1)
            q[h] = conformal_quantile(s, 1 - target) + spread * drift[h]
        return q, drift

    if params.sides:
        q_lower, drift_lower = side(below, missed_lower, params.alpha / 2)
        q_upper, drift_upper = side(above, missed_upper, params.alpha / 2)
    else:  # one two-sided score: both sides move by the same amount
        q_lower, drift_lower = side(np.maximum(below, above), missed_lower | missed_upper, params.alpha)
        q_upper, drift_upper = q_lower, drift_lower
    done = ~np.isnan(q_lower)
    size = scale if scale_ok else 0.0
    lower = np.where(done, np.minimum(lo - np.where(done, q_lower, 0.0) * size, inner_lo), lo)
    upper = np.where(done, np.maximum(hi + np.where(done, q_upper, 0.0) * size, inner_hi), hi)
    alpha = np.where(done, params.alpha, np.nan)
    return BandCalibration(lower, upper, alpha, q_lower, q_upper, counts, drift_lower, drift_upper)


def _order_statistic(scores: np.ndarray, level: float) -> float:
    """The ``floor(level * n)``-th order statistic (0-based) of ``n`` scores: a quantile without interpolation."""
    k = min(int(level * len(scores)), len(scores) - 1)
    return float(np.partition(scores, k)[k])


def sample_centre(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step, the two middle order statistics of the samples ``(M, H)`` (equal when M is odd): their mean
    is the median ``np.quantile`` reads, and ``stretch_samples`` leaves them where they are."""
    x = np.asarray(samples, dtype=np.float64)
    return np.quantile(x, 0.5, axis=0, method="lower"), np.quantile(x, 0.5, axis=0, method="higher")


@dataclass(frozen=True)
class Stretch:
    """The per-step map ``stretch_samples`` applies (``stretch_map``): values below ``a`` move to
    ``a + f_low (x - a)``, values above ``b`` to ``b + f_high (x - b)``, values in ``[a, b]`` stay. Each factor is
    at least 0, so the map never decreases: a high above its close stays above it, a low below it."""

    a: np.ndarray  # (H,) the lower middle sample
    b: np.ndarray  # (H,) the upper middle sample
    f_low: np.ndarray  # (H,)
    f_high: np.ndarray  # (H,)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The map applied to paths ``(M, H)`` (closes, or the highs or lows of the same paths). Returns float64."""
        x = np.asarray(values, dtype=np.float64)
        a, b = self.a, self.b
        return np.where(x < a, a + self.f_low * (x - a), np.where(x > b, b + self.f_high * (x - b), x))


def stretch_map(
    samples: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: np.ndarray | None = None
) -> Stretch | None:
    """The map of ``stretch_samples`` for these closes and band (None: fewer than 3 paths, nothing is moved)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        return None
    chosen = np.ones(x.shape[1], dtype=bool) if steps is None else np.asarray(steps, dtype=bool)
    a, b = sample_centre(x)
    low, high = np.quantile(x, [0.1, 0.9], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_low = np.where(a - low > 0, (a - np.asarray(lower)) / (a - low), 1.0)
        f_high = np.where(high - b > 0, (np.asarray(upper) - b) / (high - b), 1.0)
    f_low = np.where(chosen & np.isfinite(f_low), np.maximum(f_low, 0.0), 1.0)
    f_high = np.where(chosen & np.isfinite(f_high), np.maximum(f_high, 0.0), 1.0)
    return Stretch(a, b, f_low, f_high)


def stretch_samples(
    samples: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: np.ndarray | None = None
) -> np.ndarray:
    """Sample paths ``(M, H)`` mapped so that, at each step in ``steps`` (bool ``(H,)``, default all),
    ``np.quantile(out, 0.1)`` equals ``lower`` and ``np.quantile(out, 0.9)`` equals ``upper``.

    At each step the two middle values ``a <= b`` (``sample_centre``) stay, so the median stays; a value below
    ``a`` moves to ``a + f_low (x - a)``, one above ``b`` to ``b + f_high (x - b)``: one factor per side, so the
    order of the paths at each step is kept. Exact (up to rounding) when ``M >= 3``, the samples spread on
    each side and ``lower <= a``, ``b <= upper``; a side without spread is left as it is, a bound beyond the
    centre collapses that side onto it. Steps outside ``steps`` are returned unchanged. Returns float64.
    The same map (``stretch_map``) moves the paths' highs and lows, so they stay on the calibrated scale.
    """
    stretch = stretch_map(samples, lower, upper, steps)
    if stretch is None:
        return np.asarray(samples, dtype=np.float64).copy()
    return stretch.apply(samples)


def unstretch_samples(
    samples: np.ndarray, raw_lower: np.ndarray, raw_upper: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """The model's own paths ``(M, H)`` back from paths that ``stretch_samples`` mapped from the raw band
    ``[raw_lower, raw_upper]`` onto ``[lower, upper]``: the inverse map, read from the bands alone.

    The stretch keeps the two middle values ``a <= b`` of each step and scales the values below ``a`` by
    ``f_low = (a - lower) / (a - raw_lower)`` (above ``b`` likewise), so dividing by the factors restores them.
    A step the calibration left raw (``lower == raw_lower``) gets factor 1 and stays; a side the calibration
    collapsed onto the centre (factor 0) or a raw band on the wrong side of the centre cannot be undone and is
    left as served. Returns float64.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        return x.copy()
    a, b = sample_centre(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_low = (a - np.asarray(lower, dtype=np.float64)) / (a - np.asarray(raw_lower, dtype=np.float64))
        f_high = (np.asarray(upper, dtype=np.float64) - b) / (np.asarray(raw_upper, dtype=np.float64) - b)
    f_low = np.where(np.isfinite(f_low) & (f_low > 0), f_low, 1.0)
    f_high = np.where(np.isfinite(f_high) & (f_high > 0), f_high, 1.0)
    return Stretch(a, b, 1.0 / f_low, 1.0 / f_high).apply(x)


def ewma_volatility(
    times: np.ndarray, closes: np.ndarray, cutoffs: np.ndarray, halflife: float, min_returns: int | None = None
) -> np.ndarray:
    """Per cutoff: the exponentially weighted RMS of the log returns of the candles with ``time <= cutoff``.

    The newest return has weight 1, one ``halflife`` (in candles) older weight 1/2, and so on; returns older
    than ``ceil(5 * halflife)`` candles (weight below 3%) are left out, so the value depends on a fixed
    stretch of history. Returns are ``log(c_i / c_{i-1})`` of consecutive stored candles (a weekend gap is
    one return), driftless (not demeaned); one touching a close ``<= 0`` is left out. NaN with fewer than
    ``min_returns`` returns (default ``ceil(halflife)``, at least 2).
    """
    window = max(2, math.ceil(5 * halflife))
    needed = max(2, math.ceil(halflife)) if min_returns is None else min_returns
    t = np.asarray(times)
    c = np.asarray(closes, dtype=np.float64)
    cut = np.asarray(cutoffs)
    if len(c) < 2 or not len(cut):
        return np.full(len(cut), np.nan)
    last = np.searchsorted(t, cut, side="right") - 1  # the last candle by each cutoff; -1 none
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(np.where(c > 0, c, np.nan)))
    # padded[window + i] is the return ending at candle i + 1; padded[j : j + window] ends at candle j
    padded = np.r_[np.full(window, np.nan), returns]
    windows = sliding_window_view(padded, window)[np.clip(last, 0, None)]
    weights = 0.5 ** (np.arange(window - 1, -1, -1) / halflife)  # oldest first, the newest weighs 1
    present = ~np.isnan(windows)
    w = np.where(present, weights, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (w * np.where(present, windows, 0.0) ** 2).sum(axis=1) / w.sum(axis=1)
    enough = (present.sum(axis=1) >= needed) & (last >= 0)
    return np.where(enough, np.sqrt(variance), np.nan)
