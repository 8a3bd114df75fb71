"""Scoring maths, pure numpy: the one place that defines how a forecast is graded against what happened.

The scoring job (``jobs.scoring``) and the fine-tune promotion gate (``models.finetune.gate``) both use these,
so a model is promoted by the same measure it is later scored by. Every function takes whole arrays of
steps and returns one value per step (``diebold_mariano`` takes one loss-differential series).

- ``crps_from_samples``: CRPS of M sample paths, the fair (unbiased) estimator by default;
- ``crps_lognormal``: CRPS of a log-normal distribution in closed form;
- ``crps_random_walk``: the reference forecast, a driftless log-normal random walk from the last close;
- ``log_return_volatility``: the random walk's one-candle sigma, from the log returns before an origin;
- ``pinball``: the quantile (pinball) loss at level ``tau``;
- ``randomized_pit``: where the outcome fell in the sample ensemble, a number in (0, 1) that is uniform when the
  samples and the outcome come from the same distribution (the PIT histogram checks the whole distribution, not
  only p10/p50/p90); ``step_uniform`` gives its tie-breaking uniforms, reproducibly;
- ``in_band``: whether the outcome lies in ``[lower, upper]`` (averaged, the band's coverage);
- ``block_bootstrap_interval``: how uncertain a mean of serially dependent values is (e.g. the coverage of
  overlapping forecasts);
- ``coverage_interval``: the normal interval of a coverage from the Newey–West variance of its mean (the one a
  track record carries, since it can be kept incrementally);
- ``direction_hit``: whether the median and the outcome move the same way from the last close;
- ``diebold_mariano``: is one forecast's mean loss different from another's (HAC variance)?
- ``brier``, ``fair_brier``: the Brier score of a probability, and its unbiased form for a probability counted
  from M sample paths;
- ``reliability_table``, ``brier_decomposition``: predicted probability against observed frequency, in bins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr, stdtrit  # type: ignore[import-untyped]  # normal CDF, t quantile

__all__ = [
    "RELIABILITY_BINS",
    "RW_MIN_RETURNS",
    "RW_RETURNS",
    "block_bootstrap_interval",
    "brier",
    "brier_decomposition",
    "coverage_interval",
    "crps_from_samples",
    "crps_lognormal",
    "crps_random_walk",
    "diebold_mariano",
    "diebold_mariano_from_moments",
    "direction_hit",
    "fair_brier",
    "in_band",
    "log_return_volatility",
    "log_return_volatility_by_series",
    "newey_west_mean_variance",
    "newey_west_variance",
    "pinball",
    "randomized_pit",
    "reliability_table",
    "step_uniform",
]


def crps_from_samples(samples: np.ndarray, observed: np.ndarray, fair: bool = True) -> np.ndarray:
    """CRPS of each row's sample ensemble ``samples[i, :]`` against ``observed[i]``.

    ``samples`` has shape (N, M), ``observed`` (N,); returns (N,) float64.

    The fair estimator (the default) is ``mean_i |X_i - y| - sum_{i != j} |X_i - X_j| / (2 M (M - 1))``: an
    unbiased estimate of the CRPS of the distribution the M samples were drawn from. The plain estimator
    (``fair=False``, the CRPS of the empirical distribution itself) divides the pair sum by ``2 M^2`` instead,
    which overstates the CRPS by ``1/M`` of the spread term (about 3% of the CRPS at M = 32).

    With one sample (M = 1) there is no pair: the spread term is 0 and both estimators return ``|X_1 - y|``,
    the absolute error of a point forecast.

    Uses the sorted-sample identity ``sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i)`` (O(M log M) per row).
    """
    # Sorting in the stored precision (float32) gives the same order at half the memory traffic; the
    # arithmetic is float64.
    x = np.sort(np.asarray(samples), axis=1).astype(np.float64, copy=False)
    y = np.asarray(observed, dtype=np.float64)
    m = x.shape[1]
    accuracy = np.abs(x - y[:, None]).mean(axis=1)
    if m < 2:
        return accuracy
    spread_weights = 2.0 * np.arange(1, m + 1) - m - 1  # (2i - M - 1), i = 1..M
    # sum_{i != j} |x_i - x_j| / (2 M (M - 1)) = 2 sum_i (2i - M - 1) x_(i) / (2 M (M - 1))
    pairs = m * (m - 1) if fair else m * m
    spread = x @ spread_weights / pairs
    return accuracy - spread


def crps_lognormal(observed: np.ndarray, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """CRPS of the log-normal distribution with ``log X ~ N(log median, sigma^2)`` against ``observed``.

    Closed form (Baran and Lerch 2015), with ``mu = log(median)`` and ``w = (log y - mu) / sigma``::

        CRPS = y (2 Phi(w) - 1) - 2 exp(mu + sigma^2 / 2) (Phi(w - sigma) + Phi(sigma / sqrt 2) - 1)

    An outcome at or below 0 (outside the support) scores ``E X - y - E|X - X'| / 2``, the limit of the same
    expression; ``sigma == 0`` is a point mass at the median and scores ``|y - median|``. NaN where
    ``median <= 0`` or ``sigma`` is NaN or negative.
    """
    y = np.asarray(observed, dtype=np.float64)
    med = np.asarray(median, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    y, med, s = np.broadcast_arrays(y, med, s)
    valid = (med > 0) & (s >= 0)
    spread = valid & (s > 0)
    safe_s = np.where(spread, s, 1.0)
    safe_med = np.where(valid, med, 1.0)
    mean = safe_med * np.exp(safe_s**2 / 2)  # E X
    half_gini = mean * (2 * ndtr(safe_s / math.sqrt(2)) - 1)  # E|X - X'| / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        w = (np.log(np.where(y > 0, y, 1.0)) - np.log(safe_med)) / safe_s
    inside = y * (2 * ndtr(w) - 1) - 2 * mean * (ndtr(w - safe_s) + ndtr(safe_s / math.sqrt(2)) - 1)
    crps = np.where(y > 0, inside, mean - y - half_gini)
    crps = np.where(spread, crps, np.abs(y - med))
    return np.where(valid, crps, np.nan)


def crps_random_walk(
    last_close: np.ndarray, observed: np.ndarray, sigma_one_step: np.ndarray, step: np.ndarray
) -> np.ndarray:
    """CRPS of the reference forecast: a driftless log-normal random walk from the last close.

    "Driftless" means the median stays at the last close: ``log(X_h / c0) ~ N(0, sigma_1^2 h)`` at step
    ``h`` (so the mean drifts up by ``exp(sigma^2 h / 2)``, the usual convention for a random-walk reference
    on log prices). ``sigma_one_step`` is the one-candle volatility of log returns (the scoring job uses the
    sample std, ddof 1, of the 60 log returns before the forecast origin); NaN gives NaN.
    """
    h = np.asarray(step, dtype=np.float64)
    return crps_lognormal(observed, last_close, np.asarray(sigma_one_step, dtype=np.float64) * np.sqrt(h))


# The random walk's volatility: the sample std of the last RW_RETURNS log returns before the forecast origin;
# unknown (NaN) with fewer than RW_MIN_RETURNS of them (the start of a series).
RW_RETURNS = 60
RW_MIN_RETURNS = 20


def log_return_volatility(
    times: np.ndarray,
    closes: np.ndarray,
    cutoffs: np.ndarray,
    window: int = RW_RETURNS,
    min_returns: int = RW_MIN_RETURNS,
) -> np.ndarray:
    """Per cutoff: the sample std (ddof 1) of the log returns between consecutive candles among the last
    ``window + 1`` candles with ``time <= cutoff``.

    ``times`` (ascending) and ``closes`` describe one series; the log returns are ``log(c_i / c_{i-1})`` of
    consecutive candles as stored (a weekend gap is one return). A return touching a close ``<= 0`` is left
    out; NaN when fewer than ``min_returns`` returns remain.
    """
    t = np.asarray(times)
    c = np.asarray(closes, dtype=np.float64)
    last = np.searchsorted(t, np.asarray(cutoffs), side="right") - 1  # the last candle by each cutoff; -1 none
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(np.where(c > 0, c, np.nan)))
    # padded[window + i] is the return ending at candle i + 1, so padded[j : j + window] holds the returns
    # ending at candles j - window + 1 .. j.
    padded = np.r_[np.full(window, np.nan), returns]
    windows = sliding_window_view(padded, window)[np.clip(last, 0, None)]
    present = ~np.isnan(windows)
    n = present.sum(axis=1)
    values = np.where(present, windows, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = values.sum(axis=1) / n
        variance = (np.where(present, windows - mean[:, None], 0.0) ** 2).sum(axis=1) / (n - 1)
    return np.where(n >= max(min_returns, 2), np.sqrt(variance), np.nan)


def log_return_volatility_by_series(
    history: Mapping[str, tuple[np.ndarray, np.ndarray]], series: np.ndarray, cutoffs: np.ndarray
) -> np.ndarray:
    """``log_return_volatility`` for rows of many series: row ``i`` of series ``series[i]`` at ``cutoffs[i]``,
    from ``history`` (series -> (times, closes)); NaN for a series without history."""
    sigma = np.full(len(series), np.nan)
    for name in set(series.tolist()):
        if name in history:
            members = series == name
            times, closes = history[name]
            sigma[members] = log_return_volatility(times, closes, cutoffs[members])
    return sigma


def pinball(observed: np.ndarray, quantile: np.ndarray, tau: float) -> np.ndarray:
    """Pinball loss ``max(tau (y - q), (tau - 1)(y - q))`` (not doubled)."""
    diff = np.asarray(observed, dtype=np.float64) - quantile
    return np.maximum(tau * diff, (tau - 1.0) * diff)


def randomized_pit(samples: np.ndarray, observed: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Randomized probability integral transform of ``observed[i]`` in the ensemble ``samples[i, :]`` (M values):
    ``(below + u (ties + 1)) / (M + 1)``, ``below`` the samples under the outcome, ``ties`` those equal to it,
    ``u = uniform[i]`` in [0, 1). If the outcome is exchangeable with the samples, its rank among them is uniform
    on 0..M and this is uniform on (0, 1) for any M, so a histogram of it is flat with any binning (the
    rank histogram of M + 1 bars is not, once binned: 33 ranks do not fall evenly into 10 bins). U-shaped: bands
    too narrow; humped: too wide; sloped: biased. NaN where the outcome or a sample is NaN."""
    x = np.asarray(samples, dtype=np.float64)
    y = np.asarray(observed, dtype=np.float64)[:, None]
    below = (x < y).sum(axis=1)
    ties = (x == y).sum(axis=1)
    pit = (below + np.asarray(uniform, dtype=np.float64) * (ties + 1)) / (x.shape[1] + 1)
    return np.where(np.isnan(x).any(axis=1) | np.isnan(y[:, 0]), np.nan, pit)


def step_uniform(prediction_id: np.ndarray, step: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per (forecast, step), the same at every rescoring: the top 53 bits of a
    SplitMix64 hash of ``prediction_id * 2^16 + step`` (no state, so chunks and reruns agree)."""
    with np.errstate(over="ignore"):
        z = np.asarray(prediction_id, dtype=np.uint64) * np.uint64(1 << 16) + np.asarray(step, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def in_band(observed: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``lower <= y <= upper`` per step (booleans; their mean is the band's coverage)."""
    return (lower <= observed) & (observed <= upper)


def block_bootstrap_interval(
    values: np.ndarray, block: int, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The ``level`` percentile interval of the mean of ``values`` (in time order) by the circular block bootstrap
    (Politis & Romano 1992): each resample joins ``ceil(n / block)`` runs of ``block`` consecutive values,
    starting anywhere and wrapping from the end to the start (so every value is drawn equally often), cut to ``n``.

    Forecasts made one candle apart with an ``h``-step horizon share outcomes, so their coverages are far from
    independent; blocks as long as the horizon keep that dependence inside each block. With few blocks in ``n``
    (``n / block`` under about 5) the interval is itself rough, and too narrow. NaN bounds for no values.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    b = min(max(int(block), 1), n)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(resamples, math.ceil(n / b)))
    index = ((starts[:, :, None] + np.arange(b)) % n).reshape(resamples, -1)[:, :n]
    means = x[index].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def direction_hit(last_close: np.ndarray, median: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``sign(median - c0) == sign(y - c0)`` per step (a flat median hits only a flat outcome)."""
    return np.sign(median - last_close) == np.sign(observed - last_close)


def newey_west_variance(values: np.ndarray, lag: int) -> float:
    """Long-run variance of a series: ``gamma_0 + 2 sum_{k=1..lag} (1 - k / (lag + 1)) gamma_k``.

    ``gamma_k`` is the sample autocovariance at lag ``k`` (divided by n, around the series mean); the
    Bartlett weights keep the estimate non-negative. ``lag`` is capped at ``n - 1``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return math.nan
    centred = x - x.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(lag, n - 1) + 1):
        variance += 2 * (1 - k / (lag + 1)) * float(centred[k:] @ centred[:-k]) / n
    return variance


def newey_west_mean_variance(values: np.ndarray, lag: int) -> float:
    """The variance of a series' mean with ``lag`` lags of dependence: ``newey_west_variance / n``; NaN for fewer
    than 2 values."""
    n = len(values)
    return newey_west_variance(values, lag) / n if n >= 2 else math.nan


def coverage_interval(coverage: float, mean_variance: float, windows: float, level: float = 0.9) -> tuple[float, float]:
    """The ``level`` interval of a coverage (a share of steps in the band) whose mean has variance
    ``mean_variance`` (``newey_west_mean_variance`` of the in-band indicator, or of each forecast's share of its
    steps in the band), over a series that holds ``windows`` horizons (its length over ``lag + 1``):
    ``coverage ± t sqrt(mean_variance)``, ``t`` the Student t quantile ``(1 + level) / 2`` with ``windows - 1``
    degrees of freedom, clipped to ``[0, 1]``. NaN bounds for one window or less, or no variance; between one and
    two windows the interval is honest but wide (under one degree of freedom).

    Forecasts made one candle apart with an ``h``-step horizon share outcomes: with ``h - 1`` lags the variance
    counts that overlap, and the series holds about ``windows`` independent stretches (a year of daily 30-step
    forecasts about 8). The normal quantile treated them as many: on a simulated random walk with exactly
    calibrated bands its "90%" interval held the true coverage 77% of the time over a year of daily forecasts and
    27% over 21 of them; with ``t`` it holds it 83% (a year of daily), 85% (60 daily forecasts), 84% (720 hourly
    forecasts of 120 steps) and 79% (300 of them) (tests/test_scores.py).
    """
    if not mean_variance >= 0 or math.isnan(coverage) or not windows > 1:
        return math.nan, math.nan
    half = float(stdtrit(windows - 1, (1 + level) / 2)) * math.sqrt(mean_variance)
    return max(0.0, coverage - half), min(1.0, coverage + half)


def diebold_mariano(differentials: np.ndarray, lag: int) -> tuple[float, float]:
    """Diebold–Mariano test that a loss differential series ``d_t = L_model,t - L_ref,t`` has mean zero.

    ``differentials`` are ordered by forecast origin. Returns ``(statistic, two-sided p-value)`` with
    ``statistic = mean(d) / sqrt(V / n)``, ``V`` the Newey–West long-run variance with ``lag`` lags (``h - 1``
    for h-step-ahead forecasts made every candle, whose errors overlap), and the p-value from the standard
    normal. A negative statistic means the model's loss is lower. NaN for fewer than 2 values or a zero
    variance (identical losses).
    """
    d = np.asarray(differentials, dtype=np.float64)
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    return diebold_mariano_from_moments(float(d.mean()), newey_west_variance(d, lag), n)


def diebold_mariano_from_moments(mean: float, variance: float, n: int) -> tuple[float, float]:
    """The Diebold–Mariano statistic and two-sided p-value from the series' mean, Newey–West long-run variance
    and length (NaN for fewer than 2 values or a variance that is not positive)."""
    if n < 2 or not variance > 0:
        return math.nan, math.nan
    statistic = mean / math.sqrt(variance / n)
    p_value = float(2 * ndtr(-abs(statistic)))
    return statistic, p_value


# -- probabilities of events -----------------------------------------------------------------------

RELIABILITY_BINS = 10  # equal-width bins of the predicted probability: [0, 0.1), ..., [0.9, 1]


def brier(probability: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Brier score ``(p - o)^2`` per question (``o`` is 1 when the event happened, else 0)."""
    return (np.asarray(probability, dtype=np.float64) - np.asarray(outcome, dtype=np.float64)) ** 2


def fair_brier(probability: np.ndarray, outcome: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """The fair (unbiased) Brier score of a probability counted from ``paths`` sample paths, ``p = k / M``:
    ``(p - o)^2 - p (1 - p) / (M - 1)``.

    ``p`` estimates the probability ``q`` of the distribution the paths were drawn from with variance
    ``q (1 - q) / M``, so the plain Brier score reads that much too high on average (like the plain CRPS);
    ``p (1 - p) / (M - 1)`` is an unbiased estimate of it. The expectation over the paths is ``(q - o)^2``: the
    score of the model's own probability. NaN where ``M < 2``.
    """
    p = np.asarray(probability, dtype=np.float64)
    m = np.asarray(paths, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = np.where(m >= 2, p * (1 - p) / (m - 1), np.nan)
    return brier(p, outcome) - correction


def reliability_table(
    probability: np.ndarray, outcome: np.ndarray, bins: int = RELIABILITY_BINS
) -> dict[str, np.ndarray]:
    """Predicted probability against observed frequency in ``bins`` equal-width bins of ``[0, 1]`` (the last
    bin holds 1): per bin its ``lower`` and ``upper`` edge, the ``count`` of questions, their
    ``mean_predicted`` probability and the ``observed`` frequency of the event (NaN in an empty bin). A
    reliable forecaster's bins lie on the diagonal, within ``sqrt(f (1 - f) / count)``."""
    p = np.asarray(probability, dtype=np.float64)
    o = np.asarray(outcome, dtype=np.float64)
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_predicted = np.bincount(index, weights=p, minlength=bins) / count
        observed = np.bincount(index, weights=o, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "mean_predicted": mean_predicted,
            "observed": observed}  # fmt: skip


def brier_decomposition(probability: np.ndarray, outcome: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, float]:
    """Murphy's decomposition over the bins of ``reliability_table``: ``reliability`` (the count-weighted mean
    squared gap between mean predicted and observed: 0 is perfectly reliable), ``resolution`` (how far the
    bins' frequencies are from the base rate: higher is better) and ``uncertainty`` (``base rate (1 - base
    rate)``). ``reliability - resolution + uncertainty`` equals the Brier score up to the spread of the
    predictions inside each bin."""
    table = reliability_table(probability, outcome, bins)
    n = int(table["count"].sum())
    if n == 0:
        return {"reliability": math.nan, "resolution": math.nan, "uncertainty": math.nan, "base_rate": math.nan}
    base = float(np.mean(np.asarray(outcome, dtype=np.float64)))
    full = table["count"] > 0
    weights = table["count"][full] / n
    return {
        "reliability": float(weights @ (table["mean_predicted"][full] - table["observed"][full]) ** 2),
        "resolution": float(weights @ (table["observed"][full] - base) ** 2),
        "uncertainty": base * (1 - base),
        "base_rate": base,
    }
