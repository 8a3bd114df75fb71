"""The statistical baseline: a driftless random walk on log prices, needing no weights.

It is what the service serves when no neural weights are present, and the bar every neural model is scored
against. Three ways to size the random walk's steps (``BaselineConfig.method``):

- ``"gaussian"``: Gaussian steps with σ the root mean square of all log returns in the context; the same
  intervals as statsforecast's ``Naive`` fitted to log prices (exact quantiles ``c0·exp(z_q·σ·√h)``).
- ``"gaussian-ewma"``: Gaussian steps whose σ is an exponentially weighted average of recent squared returns.
- ``"bootstrap"``: filtered historical simulation. Past returns divided by the volatility expected when
  they happened give standardised shocks; paths resample those shocks (centred) and scale them by today's
  volatility, keeping the fat tails of the instrument's own history.

The default (bootstrap, half-life 30 candles) was chosen by walk-forward calibration on the 19 sample series
(``bench/baseline_calibration.py``, 300 origins each, h = 24 for 1h and 10 for 1d): CRPS 0.989 of the plain
Gaussian random walk's (geometric mean over series; gaussian-ewma with half-life 30 ties at 0.989), with the
best calibration: p10-p90 coverage 0.798 (nominal 0.80; plain Gaussian 0.820), p05-p95 0.892 (0.90), mean
per-series coverage error 0.017 (Gaussian 0.036).
Quantiles come from ``n_sim`` simulated paths (or the exact Gaussian formula), not from the few returned
samples, so they are not noisy when ``sample_count`` is small.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from candlecast.errors import InputError
from candlecast.models.base import PerSeriesForecaster, SamplePaths, SeriesInput

__all__ = ["BASELINE_METHODS", "DEFAULT_METHOD", "BaselineConfig", "BaselineForecaster"]

BASELINE_METHODS: tuple[str, ...] = ("gaussian", "gaussian-ewma", "bootstrap")
DEFAULT_METHOD = "bootstrap"


@dataclass(frozen=True)
class BaselineConfig:
    method: str = DEFAULT_METHOD
    halflife: float = 30.0  # candles; EWMA of squared log returns (gaussian-ewma, bootstrap)
    n_sim: int = 2000  # simulated paths behind the quantiles
    max_context: int = 512  # candles used; older ones are ignored

    def __post_init__(self) -> None:
        if self.method not in BASELINE_METHODS:
            raise ValueError(f"baseline method: expected one of {BASELINE_METHODS}, found {self.method!r}")
        if self.halflife <= 0 or self.n_sim < 1 or self.max_context < 3:
            raise ValueError(f"invalid baseline config {self}")


class BaselineForecaster(PerSeriesForecaster):
    """A random walk on log prices with volatility-sized steps (see the module docstring)."""

    kind = "baseline"
    min_context = 3  # two returns at least

    def __init__(self, name: str = "baseline", config: BaselineConfig | None = None) -> None:
        self.name = name
        self.config = config or BaselineConfig()
        self.max_context = self.config.max_context
        self.version = f"{self.config.method}-hl{self.config.halflife:g}-v1"

    def _sample_one(
        self, s: SeriesInput, index: int, pred_len: int, sample_count: int, seed: int | None, levels: tuple[float, ...]
    ) -> SamplePaths:
        close = s.close
        if (close <= 0).any():
            raise InputError(f"series[{index}].ohlcv", "the baseline needs positive close prices")
        returns = np.diff(np.log(close))  # (T-1,)
        rng = np.random.default_rng(seed)
        n_sim = max(self.config.n_sim, sample_count)
        horizon = np.arange(1, pred_len + 1)
        method = self.config.method
        quantiles = None
        if method == "bootstrap":
            prior_var, next_var = _ewma_variance(returns, self.config.halflife)
            shocks = returns / np.sqrt(prior_var)
            shocks -= shocks.mean()  # driftless
            steps = np.sqrt(next_var) * shocks[rng.integers(0, len(shocks), size=(n_sim, pred_len))]
        else:
            if method == "gaussian":  # root mean square of the returns, as statsforecast's Naive
                sigma = float(np.sqrt(np.mean(returns**2)))
            else:
                sigma = float(np.sqrt(_ewma_variance(returns, self.config.halflife)[1]))
            steps = sigma * rng.standard_normal((n_sim, pred_len))
            z = np.array([NormalDist().inv_cdf(q) for q in levels])
            quantiles = close[-1] * np.exp(np.outer(z, sigma * np.sqrt(horizon)))  # (Q, H)
        with np.errstate(over="ignore"):
            paths = close[-1] * np.exp(np.cumsum(steps, axis=1))  # (n_sim, H)
        if quantiles is None:
            quantiles = np.quantile(paths, levels, axis=0)
        if not (np.isfinite(paths).all() and np.isfinite(quantiles).all()):
            raise InputError(f"series[{index}].ohlcv", "price moves too extreme for a log random walk")
        return SamplePaths(close=paths[:sample_count], quantiles=quantiles)


def _ewma_variance(returns: np.ndarray, halflife: float) -> tuple[np.ndarray, float]:
    """EWMA of squared returns: the variance expected before each return (T-1,), and for the next one."""
    alpha = 1.0 - 0.5 ** (1.0 / halflife)
    floor = max(float(np.mean(returns**2)), 1e-300) * 1e-6  # keeps a flat stretch from dividing by zero
    var = max(float(np.mean(returns**2)), floor)  # start from the context's average
    prior = np.empty_like(returns)
    for t, r in enumerate(returns):
        prior[t] = var
        var = max((1.0 - alpha) * var + alpha * r * r, floor)
    return prior, var
