"""Calibration methods compared offline on the DEVELOPMENT data (not the evaluation data of bench/calibration.py).

Development data (docs/calibration.md, "How the choices were made"): daily SPY, QQQ, NVDA, WTI, GOLD, origins
2014-01-01 → 2016-12-31 (30 steps); hourly BTCUSDT, origins 2018-05-01 → 2018-07-10 (120 steps). The bench's
evaluation stretches (daily 2018, hourly 2019-08 → 10) are never read for forecasting or scoring here.

1. Raw forecasts of the baseline and GARCH at every origin (the shipped forecasters, 32 samples, context 512,
   the close of candle ``i + h`` as the outcome of step ``h`` of the forecast made at candle ``i``), cached in
   ``--cache`` (they do not depend on the calibration).
2. Each calibration method replayed as production runs it: at origin ``i`` the method sees the last
   ``lookback`` forecasts made before ``i``, only their steps realised by ``i`` (``j + h <= i``), the bands that
   were served for them, and the volatility known at each origin (``candlecast.calibration.ewma_volatility``);
   the served band and stretched samples (``stretch_samples``) are what a production row would hold.
3. Coverage of the served p10–p90 band and fair CRPS (``candlecast.scores.crps_from_samples``) of the
   stretched samples over the origins after the warm-up (daily: 2015-2016; hourly: after 600 origins),
   next to the raw forecasts', per series, model and method; also coverage per half-year (per 200 hours) and
   by horizon third, so a method that fixes the average by being wrong in both directions shows.

    PYTHONPATH=src .venv/bin/python bench/calibration_dev.py [--methods shipped,aci] [--gamma 0.1] [--series SPY]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.calibration import (
    BandCalibration,
    CalibrationParams,
    PastOutcomes,
    calibrate_band,
    conformal_quantile,
    ewma_volatility,
    sample_centre,
    stretch_samples,
)
from candlecast.config import Settings
from candlecast.models.base import Forecaster, SeriesInput
from candlecast.scores import crps_from_samples


@dataclass(frozen=True)
class DevSeries:
    """One development stretch: forecasts at every origin in ``[first, last]``; scored from ``evaluate_from``
    (a date) or after ``warmup`` origins."""

    symbol: str
    timeframe: str
    first: str
    last: str
    horizon: int
    evaluate_from: str | None = None
    warmup: int = 0


SERIES = {
    # first round: calm-ish years 2014-2016 (WTI's 2014 crash in the warm-up), BTC hourly in a quiet summer
    "SPY": DevSeries("SPY", "1d", "2014-01-01", "2016-12-31", 30, "2015-01-01"),
    "QQQ": DevSeries("QQQ", "1d", "2014-01-01", "2016-12-31", 30, "2015-01-01"),
    "NVDA": DevSeries("NVDA", "1d", "2014-01-01", "2016-12-31", 30, "2015-01-01"),
    "WTI": DevSeries("WTI", "1d", "2014-01-01", "2016-12-31", 30, "2015-01-01"),
    "GOLD": DevSeries("GOLD", "1d", "2014-01-01", "2016-12-31", 30, "2015-01-01"),
    "BTCUSDT": DevSeries("BTCUSDT", "1h", "2018-05-01", "2018-07-10 23:00", 120, warmup=600),
    # third round: shocks followed by calm, and a quarter-long drift, still outside the evaluation stretches
    "SPY-2008": DevSeries("SPY", "1d", "2007-01-01", "2010-06-30", 30, "2008-01-01"),
    "QQQ-2008": DevSeries("QQQ", "1d", "2007-01-01", "2010-06-30", 30, "2008-01-01"),
    "WTI-2008": DevSeries("WTI", "1d", "2007-01-01", "2010-06-30", 30, "2008-01-01"),
    "NVDA-2008": DevSeries("NVDA", "1d", "2007-01-01", "2010-06-30", 30, "2008-01-01"),
    "BTCUSDT-2018Q4": DevSeries("BTCUSDT", "1h", "2018-10-01", "2018-12-31 23:00", 120, warmup=600),
}
CONTEXT = 512
SAMPLES = 32
DATA = Path(__file__).resolve().parent.parent / "data" / "sample" / "candles"


@dataclass(frozen=True)
class Raw:
    """Raw forecasts of one series and model at origins ``origin`` (candle indices), and the candles."""

    closes: np.ndarray  # (T,) all candles of the series
    times: np.ndarray  # (T,) int64 ns
    origin: np.ndarray  # (N,) index of the last candle known at each forecast
    samples: np.ndarray  # (N, M, H) float32
    p10: np.ndarray  # (N, H)
    p50: np.ndarray
    p90: np.ndarray


def forecaster(model: str) -> Forecaster:
    settings = Settings()
    if model == "baseline":
        from candlecast.models.baseline import BaselineForecaster

        return BaselineForecaster()
    from candlecast.models.garch import GarchForecaster

    return GarchForecaster(settings=settings.garch)


def raw_forecasts(name: str, model: str, cache: Path) -> Raw:
    dev = SERIES[name]
    symbol, timeframe, first, last, horizon = dev.symbol, dev.timeframe, dev.first, dev.last, dev.horizon
    path = cache / f"{name}_{timeframe}_{model}.npz"
    frame = pd.read_parquet(DATA / f"{symbol}_{timeframe}.parquet")
    times = frame["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    closes = frame["close"].to_numpy(dtype=np.float64)
    lo, hi = pd.Timestamp(first).value, pd.Timestamp(last).value
    origin = np.flatnonzero((times >= lo) & (times <= hi) & (np.arange(len(times)) + horizon < len(times)))
    if path.exists():
        z = np.load(path)
        return Raw(closes, times, z["origin"], z["samples"], z["p10"], z["p50"], z["p90"])
    f = forecaster(model)
    ohlcv = frame[["open", "high", "low", "close", "volume", "amount"]].to_numpy(dtype=np.float64)
    ts = pd.DatetimeIndex(frame["ts"])
    out = {"samples": [], "p10": [], "p50": [], "p90": []}
    started = time.perf_counter()
    for i in origin:
        window = slice(i + 1 - CONTEXT, i + 1)
        s = SeriesInput(timestamps=ts[window], ohlcv=ohlcv[window], symbol=symbol, timeframe=timeframe)
        fc = f.forecast([s], horizon, sample_count=SAMPLES, seed=int(i))[0]
        out["samples"].append(fc.samples.astype(np.float32))
        for k, name in enumerate(("p10", "p50", "p90")):
            out[name].append(fc.quantiles[k])
    arrays = {k: np.stack(v) for k, v in out.items()}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, origin=origin, **arrays)
    print(f"  raw {symbol} {model}: {len(origin)} forecasts in {time.perf_counter() - started:.0f} s", flush=True)
    return Raw(closes, times, origin, arrays["samples"], arrays["p10"], arrays["p50"], arrays["p90"])


Method = Callable[..., BandCalibration]


def candidate(
    raw_lower: np.ndarray,
    raw_upper: np.ndarray,
    scale: float,
    past: PastOutcomes,
    params: CalibrationParams,
    inner_lower: np.ndarray,
    inner_upper: np.ndarray,
    pooled: bool = False,
    tracking: bool = True,
) -> BandCalibration:
    """The candidates tried: per step the integrator ``e_h = (gamma / h) * sum_j (err_j - alpha)`` (``pooled``:
    its mean over steps 1..h), used either as ACI's level (``tracking=False``: the ``1 - alpha + e_h`` conformal
    quantile of the step's scores, the method before this one when not pooled) or in quantile tracking
    (``q_h = Q_{1-alpha} + B_h * e_h``, ``B_h`` the spread of the step's scores: as shipped when pooled)."""
    lo, hi = np.asarray(raw_lower, np.float64), np.asarray(raw_upper, np.float64)
    n_steps = len(lo)
    alpha, q = np.full(n_steps, np.nan), np.full(n_steps, np.nan)
    counts = np.zeros(n_steps, dtype=np.int64)
    step = np.asarray(past.step, dtype=np.int64)
    order = np.lexsort((np.asarray(past.realised_at), step))
    bounds = np.searchsorted(step[order], np.arange(1, n_steps + 2))
    y = np.asarray(past.observed, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.maximum(past.raw_lower - y, y - past.raw_upper) / past.scale
    usable = np.isfinite(scores) & (past.scale > 0)
    missed = (y < past.served_lower) | (y > past.served_upper)
    governed = np.asarray(past.governed, dtype=bool)
    scale_ok = math.isfinite(scale) and scale > 0
    # per step the integrator (gamma / h) * sum_j (err_j - alpha); pooled: its mean over the steps up to h
    drift = np.zeros(n_steps)
    for h in range(n_steps):
        rows = order[bounds[h] : bounds[h + 1]]
        errors = missed[rows][governed[rows]]
        drift[h] = params.gamma / (h + 1) * float((errors - params.alpha).sum())
    if pooled:
        drift = np.cumsum(drift) / np.arange(1, n_steps + 1)
    for h in range(n_steps):
        rows = order[bounds[h] : bounds[h + 1]]
        scored = rows[usable[rows]][-params.window :]
        counts[h] = len(scored)
        if not scale_ok or len(scored) < max(params.min_outcomes, params.min_outcomes_per_h * (h + 1)):
            continue
        s = scores[scored]
        if tracking:
            lo_s, hi_s = np.partition(s, [len(s) // 10, (9 * len(s)) // 10])[[len(s) // 10, (9 * len(s)) // 10]]
            alpha[h] = params.alpha
            q[h] = conformal_quantile(s, 1 - params.alpha) + float(hi_s - lo_s) * drift[h]
        else:  # ACI: the level moves
            alpha[h] = params.alpha - drift[h]
            q[h] = conformal_quantile(s, 1 - alpha[h])
    done = ~np.isnan(q)
    shift = np.where(done, q, 0.0) * (scale if scale_ok else 0.0)
    lower = np.where(done, np.minimum(lo - shift, inner_lower), lo)
    upper = np.where(done, np.maximum(hi + shift, inner_upper), hi)
    return BandCalibration(lower, upper, alpha, q, q, counts, drift, drift)


def production(**changes: object) -> Method:
    """``calibrate_band`` with these ``CalibrationParams`` changed (the options production offers)."""

    def method(*args: object) -> BandCalibration:
        *rest, params, inner_lower, inner_upper = args
        return calibrate_band(*rest, dataclasses.replace(params, **changes), inner_lower, inner_upper)  # type: ignore[arg-type]

    return method


METHODS: dict[str, tuple[Method, float]] = {
    "shipped": (calibrate_band, 0.1),
    "aci": (partial(candidate, pooled=False, tracking=False), 0.02),
    "aci-pooled": (partial(candidate, pooled=True, tracking=False), 0.02),
    "qt": (partial(candidate, pooled=False), 0.1),
    # third round (docs/calibration.md): production's options, the integrator's memory and tracking per side
    "leak100": (production(memory=100.0), 0.1),
    "leak250": (production(memory=250.0), 0.1),
    "sides": (production(sides=True), 0.1),
    "sides-leak250": (production(sides=True, memory=250.0), 0.1),  # the third round's choice
}


def replay(
    raw: Raw, method: Method, params: CalibrationParams, halflife: float, lookback: int
) -> dict[str, np.ndarray]:
    """Served bands and samples at every origin, calibrating from what was known there (as production)."""
    n, _, horizon = raw.samples.shape
    sigma = ewma_volatility(np.arange(len(raw.closes)), raw.closes, raw.origin, halflife)
    c0 = raw.closes[raw.origin]
    outcome = raw.closes[raw.origin[:, None] + np.arange(1, horizon + 1)]  # (N, H)
    served_lo, served_hi = raw.p10.copy(), raw.p90.copy()
    governed = np.zeros((n, horizon), dtype=bool)
    samples = raw.samples.astype(np.float64)
    steps = np.arange(1, horizon + 1)
    for i in range(n):
        j0 = max(0, i - lookback)
        idx = np.arange(j0, i)
        # forecast j's step h is known at origin i when its candle closed: origin_j + h <= origin_i
        known = raw.origin[idx, None] + steps[None, :] <= raw.origin[i]
        jj, hh = np.nonzero(known)
        rows = idx[jj]
        past = PastOutcomes(
            step=hh + 1,
            realised_at=raw.origin[rows] + hh + 1,
            observed=outcome[rows, hh],
            raw_lower=raw.p10[rows, hh],
            raw_upper=raw.p90[rows, hh],
            served_lower=served_lo[rows, hh],
            served_upper=served_hi[rows, hh],
            scale=(c0 * sigma)[rows],
            governed=governed[rows, hh],
        )
        a, b = sample_centre(samples[i])
        inner_lo, inner_hi = np.minimum(raw.p50[i], a), np.maximum(raw.p50[i], b)
        band = method(raw.p10[i], raw.p90[i], c0[i] * sigma[i], past, params, inner_lo, inner_hi)
        done = band.calibrated
        served_lo[i], served_hi[i], governed[i] = band.lower, band.upper, done
        if done.any():
            samples[i] = stretch_samples(samples[i], band.lower, band.upper, done)
    return {"lo": served_lo, "hi": served_hi, "samples": samples, "outcome": outcome}


def summarise(raw: Raw, served: dict[str, np.ndarray], evaluated: np.ndarray) -> dict[str, float]:
    y = served["outcome"][evaluated]
    c0 = raw.closes[raw.origin[evaluated]]
    n, m, horizon = raw.samples[evaluated].shape
    inside = (y >= served["lo"][evaluated]) & (y <= served["hi"][evaluated])
    inside_raw = (y >= raw.p10[evaluated]) & (y <= raw.p90[evaluated])
    flat = served["samples"][evaluated].transpose(0, 2, 1).reshape(n * horizon, m)
    flat_raw = raw.samples[evaluated].transpose(0, 2, 1).reshape(n * horizon, m)
    crps = crps_from_samples(flat, y.reshape(-1)).reshape(n, horizon) / c0[:, None] * 1e4
    crps_raw = crps_from_samples(flat_raw, y.reshape(-1)).reshape(n, horizon) / c0[:, None] * 1e4
    thirds = np.array_split(np.arange(horizon), 3)
    # coverage per block of origins (half-years daily, ~200 candles hourly): both directions show
    blocks = np.array_split(np.arange(n), max(2, n // 125))
    per_block = [float(inside[b].mean()) for b in blocks]
    width = (served["hi"][evaluated] - served["lo"][evaluated]) / (raw.p90[evaluated] - raw.p10[evaluated])
    return {
        "cov": float(inside.mean()),
        "cov_raw": float(inside_raw.mean()),
        "crps_bp": float(crps.mean()),
        "crps_raw": float(crps_raw.mean()),
        "d_crps%": 100 * (float(crps.mean()) / float(crps_raw.mean()) - 1),
        "cov_h1/3": float(inside[:, thirds[0]].mean()),
        "cov_h2/3": float(inside[:, thirds[1]].mean()),
        "cov_h3/3": float(inside[:, thirds[2]].mean()),
        "block_min": min(per_block),
        "block_max": max(per_block),
        "block_mad": float(np.mean(np.abs(np.array(per_block) - 0.8))),
        "width": float(np.mean(width)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--models", default="baseline,garch")
    parser.add_argument("--series", default=",".join(SERIES))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/candlecast_calibration_dev"))
    parser.add_argument("--gamma", type=float, default=None)
    parser.add_argument("--halflife", type=float, default=20.0)
    parser.add_argument("--lookback", type=int, default=650)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    rows = []
    for symbol in args.series.split(","):
        dev = SERIES[symbol]
        for model in args.models.split(","):
            raw = raw_forecasts(symbol, model, args.cache)
            if dev.evaluate_from is not None:
                evaluated = raw.times[raw.origin] >= pd.Timestamp(dev.evaluate_from).value
            else:
                evaluated = np.arange(len(raw.origin)) >= dev.warmup
            for name in args.methods.split(","):
                method, default_gamma = METHODS[name]
                gamma = default_gamma if args.gamma is None else args.gamma
                params = CalibrationParams(gamma=gamma, window=args.window)
                started = time.perf_counter()
                served = replay(raw, method, params, args.halflife, args.lookback)
                rows.append({"series": f"{symbol} {dev.timeframe}", "model": model, "method": name,
                             **summarise(raw, served, evaluated), "s": time.perf_counter() - started})  # fmt: skip
                print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 240)
    print()
    print(table.round(3).to_string(index=False))
    summary = table.assign(miss=lambda t: (t["cov"] - 0.8).abs() > 0.04, err=lambda t: (t["cov"] - 0.8).abs())
    print()
    print(summary.groupby("method")[["err", "miss", "d_crps%", "block_mad"]].agg(["mean", "max"]).round(3))


if __name__ == "__main__":
    main()
