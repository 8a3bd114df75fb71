"""GARCH(1,1) with Student-t innovations: the classical anchor a quant would pick instead of a foundation model.

Each call refits, per series, on the log returns of the close over the trailing ``GarchSettings.window``
candles (``arch``'s maximum likelihood), then simulates paths from the fitted recursion

    r_t = mu + eps_t,   eps_t = sigma_t * z_t,   sigma_t^2 = omega + alpha * eps_{t-1}^2 + beta * sigma_{t-1}^2,

with ``z_t`` Student-t scaled to unit variance, and turns them into prices: last close * exp(cumsum(r)).

- Mean: zero by default (``GarchSettings.mean``). A mean estimated from a few hundred candles is mostly
  noise (its standard error is sigma / sqrt(window), a seventh of a 10-step sigma at window 500), it would
  tilt every band, and the random walks this model is compared with are driftless too. ``"constant"``
  estimates it anyway; ``bench/garch_vs_rw.py`` measures both.
- Scaling: returns are divided by their standard deviation before fitting (the optimiser prefers a variance
  near 1, as ``arch`` recommends; GARCH is scale-equivariant), and the parameters are scaled back, so
  ``GarchFit`` is in log-return units.
- Fewer than ``GarchSettings.min_window`` candles: an ``InputError`` naming the series (from ``Forecaster``).
- A fit that fails (the optimiser does not converge, an error, returns without variance, parameters that are
  not finite) or whose paths overflow is not used: that series is forecast by a driftless Gaussian random
  walk with EWMA volatility (half-life 30 candles, the baseline's ``gaussian-ewma``), and a warning is
  logged with the symbol and the reason (``Forecast`` carries no notes).

Paths are drawn with the series' own seed, ``n_sim`` of them (the quantiles come from all of them; the first
``sample_count`` are returned), so a forecast is reproducible and does not depend on batching. No weights.
Measured against random walks in docs/garch.md.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from arch import arch_model

from candlecast.config import GarchSettings
from candlecast.errors import InputError
from candlecast.models.base import PerSeriesForecaster, SamplePaths, SeriesInput

__all__ = ["FALLBACK_HALFLIFE", "GarchFit", "GarchForecaster", "fit_garch", "simulate_returns"]

log = logging.getLogger(__name__)

FALLBACK_HALFLIFE = 30.0  # candles; EWMA volatility of the fallback random walk


@dataclass(frozen=True)
class GarchFit:
    """A GARCH(1,1) on log returns per candle (not scaled), and the variance of the next candle's return.

    ``nu`` None means Gaussian innovations; ``fallback`` says why the fit was replaced by the EWMA random walk
    (``omega = alpha = 0``, ``beta = 1``: a constant variance), None when it was fitted.
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float | None
    next_variance: float
    fallback: str | None = None

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta

    @property
    def unconditional_variance(self) -> float:
        """omega / (1 - alpha - beta); infinite when the process is not covariance-stationary."""
        return self.omega / (1.0 - self.persistence) if self.persistence < 1.0 else math.inf

    def expected_variances(self, pred_len: int) -> np.ndarray:
        """E[sigma^2] of the returns of steps 1..pred_len, shape (pred_len,): sigma^2_{h+1} = omega + p sigma^2_h
        in expectation. Their cumulative sum is the variance of the h-step log return."""
        out = np.empty(pred_len)
        var = self.next_variance
        for h in range(pred_len):
            out[h] = var
            var = self.omega + self.persistence * var
        return out


def fit_garch(returns: np.ndarray, settings: GarchSettings) -> GarchFit:
    """Fit GARCH(1,1)-t to ``returns`` (log returns, oldest first); the EWMA fallback when that fails."""
    scale = float(np.std(returns))
    if not np.isfinite(scale) or scale <= 0.0:
        return _fallback(returns, "the returns have no variance")
    x = returns / scale
    try:
        model = arch_model(
            x, mean="Zero" if settings.mean == "zero" else "Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False
        )
        res = model.fit(disp="off", show_warning=False, options={"maxiter": settings.max_iter})
    except Exception as exc:  # any numerical failure of the fit falls back; it never fails the forecast
        return _fallback(returns, f"the fit failed ({type(exc).__name__}: {exc})")
    if res.convergence_flag != 0:
        return _fallback(returns, f"the fit did not converge (optimiser status {res.convergence_flag})")
    p = res.params
    mu, omega, alpha, beta, nu = (float(p.get("mu", 0.0)), float(p["omega"]), float(p["alpha[1]"]),
                                  float(p["beta[1]"]), float(p["nu"]))  # fmt: skip
    resid, vol = float(np.asarray(res.resid)[-1]), float(np.asarray(res.conditional_volatility)[-1])
    next_var = omega + alpha * resid**2 + beta * vol**2  # sigma^2 of the first candle forecast
    fitted = {"mu": mu, "omega": omega, "alpha": alpha, "beta": beta, "nu": nu, "next_variance": next_var}
    if not all(map(math.isfinite, fitted.values())) or min(omega, alpha, beta) < 0 or nu <= 2 or next_var <= 0:
        return _fallback(returns, f"unusable parameters {fitted}")
    return GarchFit(
        mu=mu * scale, omega=omega * scale**2, alpha=alpha, beta=beta, nu=nu, next_variance=next_var * scale**2
    )


def _fallback(returns: np.ndarray, reason: str) -> GarchFit:
    """A driftless Gaussian random walk whose variance is the EWMA of squared returns (newest weighs most)."""
    weights = 0.5 ** (np.arange(len(returns))[::-1] / FALLBACK_HALFLIFE)
    variance = float(np.sum(weights * returns**2) / np.sum(weights)) if len(returns) else 0.0
    return GarchFit(mu=0.0, omega=0.0, alpha=0.0, beta=1.0, nu=None, next_variance=variance, fallback=reason)


def simulate_returns(fit: GarchFit, pred_len: int, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    """``n_paths`` simulated log-return paths of ``pred_len`` steps, shape (n_paths, pred_len)."""
    if fit.nu is None:
        z = rng.standard_normal((n_paths, pred_len))
    else:
        z = rng.standard_t(fit.nu, (n_paths, pred_len)) * math.sqrt((fit.nu - 2.0) / fit.nu)  # unit variance
    out = np.empty((n_paths, pred_len))
    var = np.full(n_paths, fit.next_variance)
    with np.errstate(over="ignore", invalid="ignore"):
        for h in range(pred_len):
            eps = np.sqrt(var) * z[:, h]
            out[:, h] = fit.mu + eps
            var = fit.omega + fit.alpha * eps**2 + fit.beta * var
    return out


class GarchForecaster(PerSeriesForecaster):
    """GARCH(1,1)-t on log returns, refitted per series and call (see the module docstring)."""

    kind = "garch"
    gives_samples = True
    gives_ohlc = False
    uses_events = False

    def __init__(self, name: str = "garch", settings: GarchSettings | None = None) -> None:
        self.name = name
        self.settings = settings or GarchSettings()
        self.max_context = self.settings.window
        self.min_context = self.settings.min_window
        self.version = f"garch11-t-{self.settings.mean}-w{self.settings.window}-v1"

    def _sample_one(
        self, s: SeriesInput, index: int, pred_len: int, sample_count: int, seed: int | None, levels: tuple[float, ...]
    ) -> SamplePaths:
        close = s.close
        if (close <= 0).any():
            raise InputError(f"series[{index}].ohlcv", "GARCH needs positive close prices")
        returns = np.diff(np.log(close))
        fit = fit_garch(returns, self.settings)
        n_sim = max(self.settings.n_sim, sample_count)
        paths = _prices(close[-1], simulate_returns(fit, pred_len, n_sim, np.random.default_rng(seed)))
        if not np.isfinite(paths).all() and fit.fallback is None:  # heavy tails blew a path up
            fit = _fallback(returns, "simulated paths overflowed")
            paths = _prices(close[-1], simulate_returns(fit, pred_len, n_sim, np.random.default_rng(seed)))
        if fit.fallback is not None:
            log.warning("%s: %s %s: %s; forecast with an EWMA random walk", self.name, s.symbol, s.timeframe,
                        fit.fallback)  # fmt: skip
        if not np.isfinite(paths).all():
            raise InputError(f"series[{index}].ohlcv", "price moves too extreme for a log random walk")
        return SamplePaths(close=paths[:sample_count], quantiles=np.quantile(paths, levels, axis=0))


def _prices(last_close: float, returns: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return float(last_close) * np.exp(np.cumsum(returns, axis=1))
