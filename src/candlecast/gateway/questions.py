"""Path questions answered from a cached forecast's sample paths (``payloads/paths.py``): touch, close beyond,
which level first, maximum drawdown and run-up, each with its Monte-Carlo standard error and number of paths
(``candlecast.paths`` does the maths, vectorised over paths).

No database and no cache entry of its own: the answer is computed on every request from the paths entry, whose
arrays are decoded once and memoised on it (``entry_arrays``), so a question costs a few numpy reductions over
(paths × steps) values.

The horizon of a question is ``steps`` candles (default: the whole horizon), or given as a time ``by``: the number
of forecast candles that close by then (a candle closes one timeframe after it opens: the 1h candle opening
10:00Z closes at 11:00Z). A time before the first candle closes, or after the last one does, is refused (422).
A touch or close question's ``side`` defaults to the side the level lies on from the last close: above when the
level is at or above it, below otherwise. With ``max_standard_error`` a probability whose standard error is larger
(too few paths) is refused with a 422 that says how many paths it would need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from candlecast import paths
from candlecast.errors import InputError
from candlecast.gateway.cache import CacheEntry
from candlecast.gateway.params import PathQuestion
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import parse_iso
from candlecast.gateway.payloads.paths import decode_paths

__all__ = ["DRAWDOWN_QUANTILES", "Arrays", "answer", "entry_arrays", "resolve_steps", "touching"]

DRAWDOWN_QUANTILES = (0.1, 0.5, 0.9)
Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]  # closes, highs, lows: (paths, steps) float64

# The forecast fields every answer repeats, from the paths entry.
_FORECAST_FIELDS = ("symbol", "name", "quote_currency", "model_name", "timeframe", "forecast_id", "generated_at",
                    "as_of", "last_close", "data_mode", "data_as_of", "stale")  # fmt: skip


def entry_arrays(entry: CacheEntry) -> Arrays:
    """The entry's paths as arrays, decoded on first use and kept on the entry."""
    arrays: Arrays | None = entry.derived.get("paths")
    if arrays is None:
        value = entry.value
        closes = decode_paths(value["samples"])
        assert closes is not None
        arrays = (closes, decode_paths(value.get("samples_high")), decode_paths(value.get("samples_low")))
        entry.derived["paths"] = arrays
    return arrays


def resolve_steps(value: dict[str, Any], steps: int | None, by: datetime | None) -> int:
    """The number of forecast steps a question covers (see the module docstring)."""
    closes_at: list[str] = value["close_times"]
    horizon = len(closes_at)
    if steps is not None:
        if steps > horizon:
            raise InputError("steps", f"must be between 1 and the horizon ({horizon}), found {steps}")
        return steps
    if by is None:
        return horizon
    close_times = [parse_iso(t) for t in closes_at]
    count = sum(1 for t in close_times if t is not None and t <= by)
    if count == 0:
        raise InputError("by", f"the first forecast candle closes at {closes_at[0]}; ask for that time or later")
    last = close_times[-1]
    if last is not None and by > last:
        raise InputError("by", f"is after the horizon: the last forecast candle closes at {closes_at[-1]}")
    return count


def _side(q: PathQuestion, level: float, last_close: float) -> str:
    return q.side or ("above" if level >= last_close else "below")


def _probability(answer: paths.Answer, q: PathQuestion) -> dict[str, Any]:
    if q.max_standard_error is not None:
        paths.require_precision(answer, q.max_standard_error)
    return {"probability": answer.probability, "standard_error": answer.standard_error}


def answer(entry: CacheEntry, q: PathQuestion, stale: bool = False) -> Payload:
    """The answer to ``q`` from the paths entry ``entry`` (``stale``: the entry is served stale)."""
    value = entry.value
    closes, highs, lows = entry_arrays(entry)
    steps = resolve_steps(value, q.steps, q.by)
    last_close = float(value["last_close"])
    out: Payload = {name: value.get(name) for name in _FORECAST_FIELDS}
    out["stale"] = stale
    out.update(
        question=q.question, level=q.level, level_b=q.level_b, side=None, steps=steps, horizon_steps=closes.shape[1],
        by=value["close_times"][steps - 1], max_standard_error=q.max_standard_error, paths=int(closes.shape[0]),
        probability=None, standard_error=None, outcomes=None, quantiles=None, mean=None,
    )  # fmt: skip
    if q.question in ("touch", "close"):
        assert q.level is not None
        side = _side(q, q.level, last_close)
        above = side == "above"
        if q.question == "touch":
            result = paths.touch(closes, q.level, steps, above, highs=highs, lows=lows)
        else:
            result = paths.close_beyond(closes, q.level, steps, above)
        out.update(side=side, basis=result.basis, **_probability(result, q))
    elif q.question == "first":
        assert q.level is not None and q.level_b is not None
        outcomes = paths.first_touch(closes, q.level, q.level_b, steps, last_close, highs=highs, lows=lows)
        out["outcomes"] = {name: _probability(a, q) for name, a in outcomes.items()}
        out.update(basis=outcomes["a_first"].basis, **out["outcomes"]["a_first"])
    else:
        if q.question == "drawdown":
            quantiles = paths.max_drawdown(closes, steps, DRAWDOWN_QUANTILES, start=last_close, lows=lows)
        else:
            quantiles = paths.max_runup(closes, steps, DRAWDOWN_QUANTILES, start=last_close, highs=highs)
        out["quantiles"] = [
            {"quantile": q_, "value": v, "lower": lo, "upper": hi}
            for q_, v, lo, hi in zip(quantiles.levels, quantiles.values, quantiles.lower, quantiles.upper, strict=True)
        ]
        out.update(basis=quantiles.basis, mean=quantiles.mean)
    return out


def touching(entry: CacheEntry, level: float, steps: int, side: str) -> np.ndarray:
    """Which paths touch ``level`` within ``steps`` steps from ``side`` (on highs/lows when the entry has them):
    a boolean per path, the same rule as ``paths.touch``."""
    closes, highs, lows = entry_arrays(entry)
    above = side == "above"
    source = (highs if above else lows) if highs is not None and lows is not None else closes
    window = source[:, :steps]
    hits: np.ndarray = window.max(axis=1) >= level if above else window.min(axis=1) <= level
    return hits
