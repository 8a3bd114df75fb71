"""Questions asked of sample paths, pure numpy: the product's answer to "will it trade above 70k before
Friday?", "is my stop hit before my target?", "how deep is the drawdown likely to be?".

Every function takes the paths of one forecast (``closes`` of shape (M, H): M paths, H steps; optionally
``highs`` and ``lows`` of the same shape, when the model gives OHLC) and answers with a Monte-Carlo estimate,
its standard error and the number of paths. A touch is judged on highs/lows when they are given (a level can
be crossed inside a candle) and on closes otherwise; ``Answer.basis`` says which.

Standard errors: a probability estimated as k/M has the binomial standard error sqrt(p(1 − p)/M), computed with
p = (k + 1/2)/(M + 1) so that 0 or M hits still report an honest, non-zero error. ``require_precision``
refuses an answer whose standard error exceeds what was asked (too few paths), instead of returning it.
Quantiles (drawdown, run-up) come with a distribution-free 95% interval from the order statistics.

Grading (``docs/paths.md``, "Scored like forecasts"): once a forecast's horizon has passed, the scoring job asks it
the touch questions of a fixed grid of levels (``touch_levels``: ``k`` = ±1, ±2, ±3 standard deviations of the
random walk over the horizon from the last close), with the probability its paths give
(``touch_probabilities``), the random walk's (``random_walk_touch``, the reflection principle) and what happened
(``touch_probabilities`` of the realised path); ``touch_scores`` grades many of them: fair Brier score against
the random walk's, a Diebold–Mariano test and a reliability table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr  # type: ignore[import-untyped]

from candlecast.errors import InputError
from candlecast.scores import brier, brier_decomposition, diebold_mariano, fair_brier, reliability_table

__all__ = [
    "BGK_BETA",
    "TOUCH_GRID",
    "Answer",
    "QuantileAnswer",
    "TouchScore",
    "close_beyond",
    "first_touch",
    "max_drawdown",
    "max_runup",
    "require_precision",
    "random_walk_touch",
    "touch",
    "touch_levels",
    "touch_probabilities",
    "touch_scores",
]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Answer:
    """A probability estimated from ``paths`` sample paths, with its Monte-Carlo standard error."""

    probability: float
    standard_error: float
    paths: int
    basis: str  # "high/low" or "close": what a touch was judged on

    def as_dict(self) -> dict[str, float | int | str]:
        return {"probability": self.probability, "standard_error": self.standard_error, "paths": self.paths,
                "basis": self.basis}  # fmt: skip


@dataclass(frozen=True)
class QuantileAnswer:
    """Quantiles of a per-path quantity (e.g. the maximum drawdown), each with a 95% order-statistic interval."""

    levels: tuple[float, ...]
    values: tuple[float, ...]
    lower: tuple[float, ...]  # 95% interval of each quantile (distribution-free, from order statistics)
    upper: tuple[float, ...]
    paths: int
    basis: str
    mean: float = field(default=math.nan)


def touch(
    closes: np.ndarray,
    level: float,
    steps: int,
    above: bool,
    highs: np.ndarray | None = None,
    lows: np.ndarray | None = None,
) -> Answer:
    """P(the price touches ``level`` within the first ``steps`` steps), from above or below.

    Judged on highs (``above``) or lows (below) when given, else on closes.
    """
    closes, highs, lows = _check(closes, highs, lows, steps)
    extreme, basis = _extreme(closes, highs, lows, steps, above)
    hits = extreme >= level if above else extreme <= level
    return _binomial(hits, basis)


def close_beyond(closes: np.ndarray, level: float, step: int, above: bool) -> Answer:
    """P(the close of step ``step`` (1-based) is above, or below, ``level``)."""
    closes, _, _ = _check(closes, None, None, step)
    value = closes[:, step - 1]
    return _binomial(value > level if above else value < level, "close")


def first_touch(
    closes: np.ndarray,
    level_a: float,
    level_b: float,
    steps: int,
    origin: float,
    highs: np.ndarray | None = None,
    lows: np.ndarray | None = None,
) -> dict[str, Answer]:
    """Which of two levels is touched first within ``steps`` steps (e.g. a stop and a target):
    ``{"a_first", "b_first", "same_step", "neither"}``.

    Each level is approached from the side it lies on relative to ``origin`` (the last close): a level at or
    above it is touched by a high (or close) reaching it, one below by a low (or close). A step in which both
    are touched (possible with highs and lows) is reported as ``"same_step"`` rather than guessing the order
    inside a candle.
    """
    closes, highs, lows = _check(closes, highs, lows, steps)
    hit_a = _hits_by_step(closes, highs, lows, steps, level_a, above=level_a >= origin)
    hit_b = _hits_by_step(closes, highs, lows, steps, level_b, above=level_b >= origin)
    never = steps + 1
    first_a = np.where(hit_a.any(axis=1), hit_a.argmax(axis=1), never)
    first_b = np.where(hit_b.any(axis=1), hit_b.argmax(axis=1), never)
    basis = "high/low" if highs is not None and lows is not None else "close"
    return {
        "a_first": _binomial(first_a < first_b, basis),
        "b_first": _binomial(first_b < first_a, basis),
        "same_step": _binomial((first_a == first_b) & (first_a < never), basis),
        "neither": _binomial((first_a == never) & (first_b == never), basis),
    }


def max_drawdown(
    closes: np.ndarray,
    steps: int,
    levels: tuple[float, ...] = (0.1, 0.5, 0.9),
    start: float | None = None,
    lows: np.ndarray | None = None,
) -> QuantileAnswer:
    """Quantiles of each path's maximum drawdown to ``steps``, as a fraction (0.05 = 5% below its running peak).

    The running peak starts at ``start`` (the last close; default the median first close) and follows the
    closes; the troughs are the lows when given.
    """
    closes, _, lows = _check(closes, None, lows, steps)
    origin = float(np.median(closes[:, 0])) if start is None else float(start)
    path = closes[:, :steps]
    peak = np.maximum.accumulate(np.concatenate([np.full((len(path), 1), origin), path], axis=1), axis=1)[:, :-1]
    trough = path if lows is None else lows[:, :steps]
    drawdown = np.max(1.0 - trough / peak, axis=1).clip(min=0.0)
    return _quantiles(drawdown, levels, "close" if lows is None else "high/low")


def max_runup(
    closes: np.ndarray,
    steps: int,
    levels: tuple[float, ...] = (0.1, 0.5, 0.9),
    start: float | None = None,
    highs: np.ndarray | None = None,
) -> QuantileAnswer:
    """Quantiles of each path's maximum run-up to ``steps``: the largest rise above its running low, as a
    fraction (0.05 = 5% above it)."""
    closes, highs, _ = _check(closes, highs, None, steps)
    origin = float(np.median(closes[:, 0])) if start is None else float(start)
    path = closes[:, :steps]
    low = np.minimum.accumulate(np.concatenate([np.full((len(path), 1), origin), path], axis=1), axis=1)[:, :-1]
    peak = path if highs is None else highs[:, :steps]
    runup = np.max(peak / low - 1.0, axis=1).clip(min=0.0)
    return _quantiles(runup, levels, "close" if highs is None else "high/low")


def require_precision(answer: Answer, max_standard_error: float) -> Answer:
    """``answer`` if its standard error is within ``max_standard_error``; else ``InputError`` saying how many
    paths the asked precision needs."""
    if answer.standard_error <= max_standard_error:
        return answer
    p = answer.probability
    needed = math.ceil(max(p * (1 - p), 0.01) / max_standard_error**2)
    raise InputError(
        "max_standard_error",
        f"{answer.paths} paths give a standard error of {answer.standard_error:.3f}, more than the "
        f"{max_standard_error:.3f} asked; about {needed} paths would be needed (ask for less precision)",
    )


# -- grading touch questions -----------------------------------------------------------------------

# The levels every forecast is asked about, in standard deviations of the random walk over the horizon.
TOUCH_GRID: tuple[int, ...] = (-3, -2, -1, 1, 2, 3)
# Broadie, Glasserman and Kou's continuity correction: a walk seen only at its closes touches a barrier about as
# often as continuous Brownian motion touches one moved 0.5826 one-step sigmas further away (-zeta(1/2)/sqrt(2 pi)).
BGK_BETA = 0.5826


def touch_levels(
    last_close: np.ndarray, sigma: np.ndarray, horizon: np.ndarray, grid: tuple[int, ...] = TOUCH_GRID
) -> np.ndarray:
    """The grid of levels of each forecast, ``(F, K)``: ``last_close * exp(k * sigma * sqrt(horizon))`` for
    ``k`` in ``grid`` (above the last close for ``k > 0``, below for ``k < 0``); ``sigma`` is the one-candle
    volatility of log returns known at the origin (``scores.log_return_volatility``), ``horizon`` the steps."""
    c0 = np.asarray(last_close, dtype=np.float64)[:, None]
    width = np.asarray(sigma, dtype=np.float64) * np.sqrt(np.asarray(horizon, dtype=np.float64))
    return c0 * np.exp(np.asarray(grid, dtype=np.float64)[None, :] * width[:, None])


def touch_probabilities(
    closes: np.ndarray,
    levels: np.ndarray,
    above: np.ndarray,
    highs: np.ndarray | None = None,
    lows: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """Per level, the share of paths that touch it by the end of the paths, and the basis.

    ``closes`` (and ``highs``/``lows``, judged on when both are given) have shape ``(..., M, H)``; ``levels`` and
    ``above`` (bool: touched from below by a high, else from above by a low) ``(..., K)``, leading axes
    broadcasting (e.g. ``(F, M, H)`` with ``(F, K)``). Returns ``(..., K)``. A realised path is one path
    (``M = 1``): its "probability" is 1 if it touched, else 0.
    """
    extremes = highs is not None and lows is not None
    up = np.asarray(highs if extremes else closes, dtype=np.float64).max(axis=-1)  # (..., M)
    down = np.asarray(lows if extremes else closes, dtype=np.float64).min(axis=-1)
    lv = np.asarray(levels, dtype=np.float64)[..., None, :]  # (..., 1, K)
    hit = np.where(np.asarray(above)[..., None, :], up[..., :, None] >= lv, down[..., :, None] <= lv)
    return hit.mean(axis=-2), ("high/low" if extremes else "close")


def random_walk_touch(k: np.ndarray, horizon: np.ndarray, basis: np.ndarray | str) -> np.ndarray:
    """P(a driftless Gaussian random walk of log prices touches ``k`` of its horizon standard deviations away
    within ``horizon`` steps), by the reflection principle: ``2 Phi(-|k|)`` when watched continuously (basis
    ``"high/low"``: a candle's high and low see inside it), ``2 Phi(-(|k| sqrt(h) + 0.5826) / sqrt(h))`` when
    only the closes are seen (basis ``"close"``, the continuity correction ``BGK_BETA``)."""
    h = np.asarray(horizon, dtype=np.float64)
    distance = np.abs(np.asarray(k, dtype=np.float64)) * np.sqrt(h)  # in one-step sigmas
    shift = np.where(np.asarray(basis) == "close", BGK_BETA, 0.0)
    return 2 * ndtr(-(distance + shift) / np.sqrt(h))


@dataclass(frozen=True)
class TouchScore:
    """How a set of graded touch questions scored (``touch_scores``)."""

    forecasts: int
    questions: int
    brier: float  # fair Brier score of the paths' probabilities (unbiased for the model's own probability)
    brier_plain: float  # the Brier score of the counted probabilities as they are
    brier_rw: float  # the random walk's, on the same questions
    skill: float  # 1 - brier / brier_rw (> 0: better than the random walk)
    dm_stat: float  # Diebold–Mariano statistic of brier - brier_rw (< 0: the model's score is lower)
    dm_pvalue: float
    base_rate: float  # share of questions whose level was touched
    reliability: dict[str, np.ndarray]  # scores.reliability_table of the paths' probabilities
    decomposition: dict[str, float]  # scores.brier_decomposition


def touch_scores(
    origin: np.ndarray,
    forecast: np.ndarray,
    probability: np.ndarray,
    probability_rw: np.ndarray,
    touched: np.ndarray,
    paths: np.ndarray,
    horizon: int,
) -> TouchScore:
    """Grade touch questions, one entry each: the forecast's ``origin`` (sortable) and id, the paths'
    ``probability`` counted from ``paths`` paths, the random walk's, and whether the level was ``touched``.

    The Diebold–Mariano test takes, per origin, the mean of ``fair Brier - random walk Brier`` over every
    question asked at that origin (levels, instruments: they share the same market moves), in time order,
    with a Newey–West variance of ``horizon - 1`` lags (forecasts ``horizon`` candles long made every candle
    overlap).
    """
    o = np.asarray(touched, dtype=np.float64)
    p = np.asarray(probability, dtype=np.float64)
    fair = fair_brier(p, o, paths)
    reference = brier(probability_rw, o)
    d = fair - reference
    origins, at = np.unique(np.asarray(origin), return_inverse=True)  # ascending origins
    per_origin = np.bincount(at, weights=d, minlength=len(origins)) / np.bincount(at, minlength=len(origins))
    dm_stat, dm_pvalue = diebold_mariano(per_origin, lag=max(int(horizon) - 1, 0))
    mean_rw = float(reference.mean()) if len(o) else math.nan
    mean_fair = float(fair.mean()) if len(o) else math.nan
    return TouchScore(
        forecasts=len(np.unique(np.asarray(forecast))),
        questions=len(o),
        brier=mean_fair,
        brier_plain=float(brier(p, o).mean()) if len(o) else math.nan,
        brier_rw=mean_rw,
        skill=1 - mean_fair / mean_rw if mean_rw > 0 else math.nan,
        dm_stat=dm_stat,
        dm_pvalue=dm_pvalue,
        base_rate=float(o.mean()) if len(o) else math.nan,
        reliability=reliability_table(p, o),
        decomposition=brier_decomposition(p, o),
    )


# -- helpers -----------------------------------------------------------------------------------------


def _check(
    closes: np.ndarray, highs: np.ndarray | None, lows: np.ndarray | None, steps: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    closes = np.asarray(closes, dtype=np.float64)
    if closes.ndim != 2 or closes.shape[0] < 1 or closes.shape[1] < 1:
        raise InputError("samples", f"expected paths of shape (paths, steps), found {closes.shape}")
    if not 1 <= steps <= closes.shape[1]:
        raise InputError("steps", f"must be between 1 and the horizon ({closes.shape[1]}), found {steps}")
    out = []
    for name, extra in (("highs", highs), ("lows", lows)):
        if extra is not None:
            extra = np.asarray(extra, dtype=np.float64)
            if extra.shape != closes.shape:
                raise InputError(name, f"expected shape {closes.shape} like the closes, found {extra.shape}")
        out.append(extra)
    return closes, out[0], out[1]


def _extreme(
    closes: np.ndarray, highs: np.ndarray | None, lows: np.ndarray | None, steps: int, above: bool
) -> tuple[np.ndarray, str]:
    source = highs if above else lows
    if source is None:
        window = closes[:, :steps]
        return (window.max(axis=1) if above else window.min(axis=1)), "close"
    window = source[:, :steps]
    return (window.max(axis=1) if above else window.min(axis=1)), "high/low"


def _hits_by_step(
    closes: np.ndarray, highs: np.ndarray | None, lows: np.ndarray | None, steps: int, level: float, above: bool
) -> np.ndarray:
    source = (highs if above else lows) if highs is not None and lows is not None else closes
    window = source[:, :steps]
    return window >= level if above else window <= level


def _binomial(hits: np.ndarray, basis: str) -> Answer:
    n = int(hits.size)
    k = int(np.count_nonzero(hits))
    shrunk = (k + 0.5) / (n + 1)
    return Answer(probability=k / n, standard_error=math.sqrt(shrunk * (1 - shrunk) / n), paths=n, basis=basis)


def _quantiles(values: np.ndarray, levels: tuple[float, ...], basis: str) -> QuantileAnswer:
    if not levels or not all(0 < q < 1 for q in levels):
        raise InputError("levels", f"each level must be in (0, 1), found {list(levels)}")
    ordered = np.sort(values)
    n = len(ordered)
    lower, upper = [], []
    for q in levels:
        # Order-statistic interval: ranks n q -/+ 1.96 sqrt(n q (1 - q)), clipped to the sample.
        half = _Z95 * math.sqrt(n * q * (1 - q))
        lower.append(float(ordered[max(0, math.floor(n * q - half))]))
        upper.append(float(ordered[min(n - 1, math.ceil(n * q + half))]))
    return QuantileAnswer(
        levels=tuple(levels),
        values=tuple(float(v) for v in np.quantile(values, levels)),
        lower=tuple(lower),
        upper=tuple(upper),
        paths=n,
        basis=basis,
        mean=float(values.mean()),
    )
