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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from candlecast.errors import InputError

__all__ = [
    "Answer",
    "QuantileAnswer",
    "close_beyond",
    "first_touch",
    "max_drawdown",
    "max_runup",
    "require_precision",
    "touch",
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
