"""Mergeable summaries of scored steps, so ``refresh_performance`` does not re-read all history.

Every value of a ``signal_performance`` row is a function of sums that can be added up piece by piece:

- counts and sums (steps, hits, in-band, CRPS and its pairs with the random walk, pinball, CRPS / last close),
  first and last origin;
- the Sharpe ratio's mean and variance (Chan's parallel update of ``(n, mean, M2)``);
- the Newey–West variance with ``L`` lags of two series in origin order: the CRPS differential (the
  Diebold–Mariano statistic) and the served band's in-band indicator (the coverage's 90% interval). For a series
  ``x_1..x_n`` in origin order with mean ``m`` and ``S = sum x``, ``sum_{t>k} (x_t - m)(x_{t-k} - m) = C_k
  - m (S - P_k) - m (S - Q_k) + (n - k) m^2``, where ``C_k = sum_{t>k} x_t x_{t-k}``, ``P_k`` is the sum of the
  first ``k`` values and ``Q_k`` of the last ``k``. A summary keeps ``n``, ``S``, ``C_0..C_L`` and its first and
  last ``L`` values; two consecutive summaries merge by adding the cross products that straddle their boundary.

``refresh_performance`` keeps, per (symbol, model), one summary per step and one of all steps for the forecasts made
before the series' boundary (a row of ``performance_summaries``), and adds the summary of the newer scores, read
afresh when the series' scores change.
The results equal a full recomputation up to floating-point rounding (tests/jobs/test_performance_state.py).

The state is serialised with numpy's ``.npz`` (no pickle), with a layout version: ``load_state`` refuses a state
of another layout (``OutdatedState``; before the in-band series, migration 0015), and the refresh then recomputes
that series from all its scores.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candlecast.errors import CandlecastError
from candlecast.scores import coverage_interval, diebold_mariano_from_moments

__all__ = [
    "OutdatedState",
    "Series",
    "Summary",
    "all_steps_summary",
    "dump_state",
    "load_state",
    "per_forecast_series",
    "row_values",
    "step_summary",
]

STATE_VERSION = 2  # 1 (unversioned): no in-band series; 2: ``Summary.band``


class OutdatedState(CandlecastError, ValueError):
    """A stored state of another layout than ``dump_state`` writes (its series must be recomputed from all scores)."""


@dataclass(frozen=True)
class Series:
    """What the Newey–West variance with up to ``lag`` lags needs of a series in time order."""

    lag: int
    n: int = 0
    total: float = 0.0
    cross: np.ndarray = field(default_factory=lambda: np.zeros(0))  # C_0..C_lag
    head: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the first min(n, lag) values
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the last min(n, lag) values

    @classmethod
    def of(cls, values: np.ndarray, lag: int) -> Series:
        x = np.asarray(values, dtype=np.float64)
        n = len(x)
        cross = np.zeros(lag + 1)
        if n:
            cross[0] = float(x @ x)
            for k in range(1, min(lag, n - 1) + 1):
                cross[k] = float(x[k:] @ x[:-k])
        return cls(lag, n, float(x.sum()), cross, x[:lag].copy(), x[n - min(n, lag) :].copy())

    def then(self, later: Series) -> Series:
        """This series followed by ``later`` (same lag)."""
        if later.n == 0:
            return self
        if self.n == 0:
            return later
        lag = self.lag
        cross = self.cross + later.cross
        a, b = self.tail, later.head
        for k in range(1, lag + 1):  # pairs (t in later, t - k in self)
            j = np.arange(max(0, k - len(a)), min(k, len(b)))
            if len(j):
                cross[k] += float(b[j] @ a[len(a) - k + j])
        head = np.r_[self.head, later.head][:lag]
        tail = np.r_[self.tail, later.tail]
        return Series(
            lag, self.n + later.n, self.total + later.total, cross, head, tail[len(tail) - min(len(tail), lag) :]
        )

    def long_run_variance(self, lag: int) -> float:
        """``scores.newey_west_variance`` of the series with ``lag`` lags (at most the summary's); NaN for none."""
        n = self.n
        if n == 0:
            return math.nan
        if lag > self.lag:
            raise ValueError(f"the summary keeps {self.lag} lags, {lag} asked")
        m = self.total / n
        k = np.arange(min(lag, n - 1) + 1)  # 0..L
        first = np.r_[0.0, np.cumsum(self.head)][k]  # P_k: the sum of the first k values
        last = np.r_[0.0, np.cumsum(self.tail[::-1])][k]  # Q_k: the sum of the last k values
        gamma = (self.cross[k] - m * (self.total - first) - m * (self.total - last) + (n - k) * m * m) / n
        weights = np.r_[1.0, 2 * (1 - k[1:] / (lag + 1))]  # Bartlett, both sides of lags 1..L
        return float(weights @ gamma)

    def mean_variance(self, lag: int) -> float:
        """``scores.newey_west_mean_variance``: the variance of the series' mean (NaN for fewer than 2 values)."""
        return self.long_run_variance(lag) / self.n if self.n >= 2 else math.nan

    def diebold_mariano(self, lag: int) -> tuple[float, float]:
        """``scores.diebold_mariano`` of the series with ``lag`` lags (at most the summary's)."""
        if self.n < 2:
            return math.nan, math.nan
        return diebold_mariano_from_moments(self.total / self.n, self.long_run_variance(lag), self.n)


@dataclass(frozen=True)
class Summary:
    """The mergeable content of one performance row (a (symbol, model, step) or all steps of a (symbol, model))."""

    d: Series  # CRPS - random walk CRPS per step (a step row) or per forecast (all steps), in origin order
    band: Series  # in the served band per step (a step row) or share of the forecast's steps (all steps), same order
    n_steps: int = 0
    n_predictions: int = 0
    hits: int = 0
    in_band: int = 0
    in_band_raw: int = 0
    crps_sum: float = 0.0
    crps_n: int = 0
    pair_n: int = 0
    pair_crps: float = 0.0
    pair_rw: float = 0.0
    relative_sum: float = 0.0
    relative_n: int = 0
    pinball_sum: float = 0.0
    first: int | None = None  # raw Postgres timestamps
    last: int | None = None
    returns_n: int = 0  # the Sharpe ratio's returns: count, mean, sum of squared deviations
    returns_mean: float = 0.0
    returns_m2: float = 0.0
    max_step: int = 0

    def then(self, later: Summary) -> Summary:
        """This summary followed by ``later`` (later origins)."""
        if later.n_steps == 0:
            return self
        if self.n_steps == 0:
            return later
        n = self.returns_n + later.returns_n
        delta = later.returns_mean - self.returns_mean
        mean = self.returns_mean + delta * later.returns_n / n if n else 0.0
        m2 = self.returns_m2 + later.returns_m2 + delta * delta * self.returns_n * later.returns_n / n if n else 0.0
        sums = {
            name: getattr(self, name) + getattr(later, name)
            for name in ("n_steps", "n_predictions", "hits", "in_band", "in_band_raw", "crps_sum", "crps_n",
                         "pair_n", "pair_crps", "pair_rw", "relative_sum", "relative_n", "pinball_sum")
        }  # fmt: skip
        return Summary(
            d=self.d.then(later.d), band=self.band.then(later.band), **sums, first=_pick(min, self.first, later.first),
            last=_pick(max, self.last, later.last), returns_n=n, returns_mean=mean,
            returns_m2=m2, max_step=max(self.max_step, later.max_step),
        )  # fmt: skip


def _pick(choose: Any, a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else choose(a, b)


def _common(part: dict[str, np.ndarray]) -> dict[str, Any]:
    crps, rw = part["crps"], part["crps_rw"]
    paired = ~np.isnan(crps) & ~np.isnan(rw)
    present = ~np.isnan(crps)
    relative = part["crps_relative"][~np.isnan(part["crps_relative"])]
    return {
        "n_steps": len(crps), "hits": int(part["direction_hit"].sum()), "in_band": int(part["in_band"].sum()),
        "in_band_raw": int(part["in_band_raw"].sum()), "crps_sum": float(crps[present].sum()),
        "crps_n": int(present.sum()), "pair_n": int(paired.sum()), "pair_crps": float(crps[paired].sum()),
        "pair_rw": float(rw[paired].sum()), "relative_sum": float(relative.sum()), "relative_n": len(relative),
        "pinball_sum": float(part["pinball"].sum()), "first": int(part["as_of"].min()),
        "last": int(part["as_of"].max()), "max_step": int(part["step"].max()),
    }  # fmt: skip


def _returns(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"returns_n": 0, "returns_mean": 0.0, "returns_m2": 0.0}
    mean = float(values.mean())
    return {"returns_n": len(values), "returns_mean": mean, "returns_m2": float(((values - mean) ** 2).sum())}


def step_summary(part: dict[str, np.ndarray], h: int) -> Summary:
    """The summary of step ``h``'s scored steps ``part`` (columns of ``ScoredSteps``, ordered by origin)."""
    if not len(part["step"]):
        return Summary(Series(h - 1), Series(h - 1))
    d = part["crps"] - part["crps_rw"]
    common = _common(part)
    return Summary(
        d=Series.of(d[~np.isnan(d)], h - 1), band=Series.of(part["in_band"], h - 1), **common,
        n_predictions=common["n_steps"],
        **_returns(part["strategy_return"]),
    )  # fmt: skip


def all_steps_summary(part: dict[str, np.ndarray], lag: int) -> Summary:
    """The summary of all steps of a (symbol, model): ``part`` in any order; its per-forecast mean differential
    series is kept with ``lag`` lags."""
    if not len(part["step"]):
        return Summary(Series(lag), Series(lag))
    n_forecasts, per_forecast, in_band = per_forecast_series(part)
    return Summary(
        d=Series.of(per_forecast, lag), band=Series.of(in_band, lag), **_common(part), n_predictions=n_forecasts,
        **_returns(part["strategy_return"][part["step"] == 1]),
    )  # fmt: skip


def per_forecast_series(part: dict[str, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """The all-steps row's two series of scored steps ``part`` (any order; one forecast per origin), in origin
    order: each forecast's mean CRPS differential to the random walk (forecasts with a paired step only) and its
    share of steps in the served band; and the number of forecasts."""
    origins, forecast = np.unique(part["as_of"], return_inverse=True)
    d = part["crps"] - part["crps_rw"]
    paired = ~np.isnan(d)
    n_paired = np.bincount(forecast[paired], minlength=len(origins))
    d_sum = np.bincount(forecast[paired], weights=d[paired], minlength=len(origins))
    in_band = np.bincount(forecast, weights=part["in_band"], minlength=len(origins)) / np.bincount(forecast)
    return len(origins), d_sum[n_paired > 0] / n_paired[n_paired > 0], in_band


def row_values(s: Summary, periods: float, lag: int, timestamp: Any) -> dict[str, Any]:
    """The values of a performance row (as ``jobs.scoring.performance_rows`` computes them) from its summary;
    ``periods``: the Sharpe ratio's periods a year; ``lag``: the Diebold–Mariano lags; ``timestamp`` turns a raw
    Postgres timestamp into a datetime. The coverage's interval: ``scores.coverage_interval`` with the variance of the
    in-band series' mean (``lag`` lags too)."""
    dm_stat, dm_pvalue = s.d.diebold_mariano(lag)
    nan = math.nan
    spread = math.sqrt(s.returns_m2 / (s.returns_n - 1)) if s.returns_n > 1 else 0.0
    coverage = s.in_band / s.n_steps
    coverage_low, coverage_high = coverage_interval(coverage, s.band.mean_variance(lag), s.band.n / (lag + 1))
    return {
        "n_steps": s.n_steps,
        "hit_rate": s.hits / s.n_steps,
        "coverage": coverage,
        "coverage_low": coverage_low,
        "coverage_high": coverage_high,
        "coverage_raw": s.in_band_raw / s.n_steps,
        "mean_crps": s.crps_sum / s.crps_n if s.crps_n else nan,
        "mean_crps_rw": s.pair_rw / s.pair_n if s.pair_n else nan,
        "crps_skill": 1 - s.pair_crps / s.pair_rw if s.pair_rw > 0 else nan,
        "crps_bp": (s.relative_sum / s.relative_n if s.relative_n else nan) * 1e4,
        "mean_pinball": s.pinball_sum / s.n_steps,
        "first_as_of": timestamp(s.first),
        "last_as_of": timestamp(s.last),
        "n_predictions": s.n_predictions,
        "dm_stat": dm_stat,
        "dm_pvalue": dm_pvalue,
        "mean_strategy_return": s.returns_mean if s.returns_n else nan,
        "sharpe": s.returns_mean / spread * math.sqrt(periods) if spread > 0 else nan,
    }


# -- (de)serialisation -----------------------------------------------------------------------------

_SERIES = ("d", "band")
_SCALARS = tuple(name for name in Summary.__dataclass_fields__ if name not in _SERIES)


def dump_state(summaries: dict[int, Summary]) -> bytes:
    """``.npz`` bytes of one series' summaries keyed by step (0 = all steps)."""
    keys = list(summaries)
    values = [summaries[k] for k in keys]
    scalars = np.array(
        [[np.nan if getattr(s, n) is None else float(getattr(s, n)) for n in _SCALARS] for s in values]
    ).reshape(len(values), len(_SCALARS))
    arrays: dict[str, Any] = {}
    for kind in _SERIES:
        of_kind = [getattr(s, kind) for s in values]
        sizes = [[x.lag, x.n, x.total] for x in of_kind]
        arrays[f"{kind}_series"] = np.array(sizes, dtype=np.float64).reshape(len(values), 3)
        for name in ("cross", "head", "tail"):
            parts = [getattr(x, name) for x in of_kind]
            arrays[f"{kind}_{name}"] = np.concatenate(parts) if parts else np.zeros(0)
            arrays[f"{kind}_{name}_len"] = np.array([len(p) for p in parts], dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, version=np.array(STATE_VERSION), keys=np.array(keys, dtype=np.int64), scalars=scalars, **arrays)
    return buffer.getvalue()


def load_state(blob: bytes) -> dict[int, Summary]:
    """The summaries ``dump_state`` stored; ``OutdatedState`` for a state of another layout (an older one lacks the
    in-band series: its series is recomputed from all scores)."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        version = int(data["version"]) if "version" in data.files else 1
        if version != STATE_VERSION:
            raise OutdatedState(f"a performance state of layout {version}, not {STATE_VERSION}")
        keys = [int(k) for k in data["keys"]]
        scalars = data["scalars"]
        series: dict[str, list[Series]] = {}
        for which in _SERIES:
            head = data[f"{which}_series"]
            pieces = {}
            for name in ("cross", "head", "tail"):
                bounds = np.r_[0, np.cumsum(data[f"{which}_{name}_len"])]
                flat = data[f"{which}_{name}"]
                pieces[name] = [flat[bounds[i] : bounds[i + 1]] for i in range(len(keys))]
            series[which] = [
                Series(int(head[i, 0]), int(head[i, 1]), float(head[i, 2]), pieces["cross"][i], pieces["head"][i],
                       pieces["tail"][i])
                for i in range(len(keys))
            ]  # fmt: skip
    out: dict[int, Summary] = {}
    for i, key in enumerate(keys):
        values: dict[str, Any] = {}
        for j, name in enumerate(_SCALARS):
            v = scalars[i, j]
            kind = Summary.__dataclass_fields__[name].type
            if name in ("first", "last"):
                values[name] = None if np.isnan(v) else int(v)
            elif "int" in str(kind):
                values[name] = int(v)
            else:
                values[name] = float(v)
        out[key] = Summary(series["d"][i], series["band"][i], **values)
    return out
