"""Walk-forward: GARCH(1,1)-t against the baseline and a trailing-volatility random walk on real daily series.

For SPY, QQQ, NVDA, GOLD and WTI daily (data/sample/candles), forecasts are made at evenly spaced origins (the
first after ``--window`` candles, so every GARCH fit sees a full window) for 10 steps, and scored against the
realised closes:

- fair CRPS from ``--samples`` paths per origin (``mean|X - y| - sum_{i != j} |X_i - X_j| / (2 M (M - 1))``,
  unbiased for any M), in basis points of the last close, at every step;
- p10-p90 coverage (nominal 0.80) from each model's own quantiles.

Models: ``garch`` (zero mean, the default), ``garch-const`` (constant mean), ``baseline`` (the shipped
default, a filtered bootstrap) and ``rw``: a driftless log-normal random walk, sigma = std of the last 60 log
returns x sqrt(h). Skill = 1 - CRPS / CRPS_rw over all origins and steps (``skill``), at step 1 only
(``skill_h1``), and over the most volatile third of origins by the random walk's sigma (``skill_vol``); ``se``
is the standard error of ``skill`` from the per-origin CRPS differences (origins are at least a horizon apart,
so their losses barely overlap). A last table pools the series by calendar year, most volatile first.

    PYTHONPATH=src .venv/bin/python bench/garch_vs_rw.py [--origins 300] [--samples 256]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.config import GarchSettings, Settings
from candlecast.models.base import Forecaster, SeriesInput
from candlecast.models.baseline import BaselineForecaster
from candlecast.models.calendars import calendar_for
from candlecast.models.garch import GarchForecaster

SERIES = ("SPY", "QQQ", "NVDA", "GOLD", "WTI")
PRED_LEN = 10
RW_LOOKBACK = 60
MIN_YEAR_ORIGINS = 40  # years with fewer pooled origins (only NVDA goes past 2020) are left out of that table
Z90 = 1.2815515655446004  # standard normal 0.9 quantile


def fair_crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fair CRPS of each column of ``samples`` (M, H) against ``y`` (H,), via the sorted-sample identity
    sum_{i,j} |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i)."""
    x = np.sort(samples, axis=0)
    m = x.shape[0]
    weights = 2.0 * np.arange(1, m + 1) - m - 1
    accuracy = np.abs(x - y).mean(axis=0)
    spread = (weights @ x) / (m * (m - 1))  # = sum_{i != j} |x_i - x_j| / (2 M (M - 1))
    return np.asarray(accuracy - spread)


def rw_forecast(close: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples (M, H), p10 and p90 (H,) of the driftless log-normal random walk."""
    sigma = float(np.std(np.diff(np.log(close[-RW_LOOKBACK - 1 :])), ddof=1))
    steps = np.arange(1, PRED_LEN + 1)
    samples = close[-1] * np.exp(np.cumsum(sigma * rng.standard_normal((m, PRED_LEN)), axis=1))
    half = Z90 * sigma * np.sqrt(steps)
    return samples, close[-1] * np.exp(-half), close[-1] * np.exp(half)


def score_series(symbol: str, args: argparse.Namespace, settings: Settings) -> pd.DataFrame:
    df = pd.read_parquet(args.data_dir / f"{symbol}_1d.parquet").sort_values("ts").reset_index(drop=True)
    ohlcv = df[["open", "high", "low", "close", "volume", "amount"]].to_numpy(np.float64)
    ts = pd.DatetimeIndex(df["ts"])
    calendar = calendar_for(symbol, settings.universe, settings.market_calendars)
    models: dict[str, Forecaster] = {
        "garch": GarchForecaster(settings=GarchSettings(window=args.window)),
        "garch-const": GarchForecaster("garch-const", GarchSettings(window=args.window, mean="constant")),
        "baseline": BaselineForecaster(),
    }
    origins = np.unique(np.linspace(args.window, len(df) - PRED_LEN, args.origins).astype(int))
    rows = []
    for k, origin in enumerate(origins):
        lo = origin - args.window
        s = SeriesInput(
            timestamps=ts[lo:origin], ohlcv=ohlcv[lo:origin], symbol=symbol, timeframe="1d", calendar=calendar
        )
        y, c0 = ohlcv[origin : origin + PRED_LEN, 3], s.last_close
        rw_samples, rw_p10, rw_p90 = rw_forecast(s.close, args.samples, np.random.default_rng(k))
        rw_sigma = float(np.log(rw_p90[0] / c0) / Z90)
        row: dict[str, object] = {"origin": ts[origin], "rw_sigma": rw_sigma}
        outputs = {"rw": (rw_samples, rw_p10, rw_p90)}
        for name, model in models.items():
            f = model.forecast([s], PRED_LEN, args.samples, (0.1, 0.5, 0.9), seed=k)[0]
            outputs[name] = (f.samples, f.p10, f.p90)
        for name, (samples, p10, p90) in outputs.items():
            crps = fair_crps(samples, y) / c0 * 1e4  # (H,) basis points
            row[f"{name}_crps"] = float(crps.mean())
            row[f"{name}_crps_h1"] = float(crps[0])
            row[f"{name}_cover"] = float(np.mean((p10 <= y) & (y <= p90)))
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(symbol: str, frame: pd.DataFrame, names: list[str]) -> dict[str, object]:
    out: dict[str, object] = {"series": symbol, "origins": len(frame), "from": f"{frame.origin.iloc[0]:%Y-%m}",
                              "to": f"{frame.origin.iloc[-1]:%Y-%m}"}  # fmt: skip
    rw = frame["rw_crps"]
    volatile = frame["rw_sigma"] >= frame["rw_sigma"].quantile(2 / 3)
    out["rw_crps_bp"] = rw.mean()
    for name in names:
        crps = frame[f"{name}_crps"]
        out[f"{name}_crps_bp"] = crps.mean()
        out[f"{name}_skill"] = 1 - crps.mean() / rw.mean()
        out[f"{name}_se"] = float((rw - crps).std(ddof=1) / np.sqrt(len(frame)) / rw.mean())
        out[f"{name}_skill_h1"] = 1 - frame[f"{name}_crps_h1"].mean() / frame["rw_crps_h1"].mean()
        out[f"{name}_skill_vol"] = 1 - crps[volatile].mean() / rw[volatile].mean()
    for name in ["rw", *names]:
        out[f"{name}_cover"] = frame[f"{name}_cover"].mean()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data/sample/candles"))
    parser.add_argument("--origins", type=int, default=300, help="forecast origins per series")
    parser.add_argument("--samples", type=int, default=256, help="sample paths scored per origin")
    parser.add_argument("--window", type=int, default=GarchSettings().window, help="candles of context")
    args = parser.parse_args()
    settings = Settings()
    names = ["garch", "garch-const", "baseline"]
    print(f"{len(SERIES)} daily series, {args.origins} origins each, h = 1..{PRED_LEN}, {args.samples} samples, "
          f"context {args.window} candles; random walk sigma from the last {RW_LOOKBACK} returns")  # fmt: skip
    started = time.perf_counter()
    frames = {symbol: score_series(symbol, args, settings) for symbol in SERIES}
    table = pd.DataFrame([summarise(symbol, frame, names) for symbol, frame in frames.items()]).set_index("series")
    print(f"{time.perf_counter() - started:.0f} s\n")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 40)
    print("Fair CRPS (bp of the last close, mean over origins and steps):")
    print(table[["from", "to", "origins", "rw_crps_bp", *[f"{n}_crps_bp" for n in names]]].round(1).to_string())
    print("\nSkill = 1 - CRPS / CRPS_rw (se: standard error of skill; h1: step 1; vol: most volatile third):")
    cols = [f"{n}_{c}" for n in names for c in ("skill", "se", "skill_h1", "skill_vol")]
    print(table[cols].round(3).to_string())
    print("\np10-p90 coverage (nominal 0.80):")
    print(table[[f"{n}_cover" for n in ["rw", *names]]].round(3).to_string())
    pooled = pd.concat(frames.values())
    print(f"\nBy calendar year, all series pooled, years with at least {MIN_YEAR_ORIGINS} origins, most volatile "
          "first (sigma: the random walk's daily sigma):")  # fmt: skip
    year = pooled.origin.dt.year
    counts = year.value_counts()
    recent = pooled[year.map(counts) >= MIN_YEAR_ORIGINS]
    by_year = recent.groupby(recent.origin.dt.year)
    years = pd.DataFrame({"origins": by_year.size(), "rw_sigma_pct": by_year.rw_sigma.mean() * 100})
    for name in ("garch", "baseline"):
        years[f"{name}_skill"] = 1 - by_year[f"{name}_crps"].mean() / by_year.rw_crps.mean()
        years[f"{name}_skill_h1"] = 1 - by_year[f"{name}_crps_h1"].mean() / by_year.rw_crps_h1.mean()
    print(years.sort_values("rw_sigma_pct", ascending=False).round(3).to_string())
    rw = pooled["rw_crps"]
    parts = []
    for n in names:
        se = (rw - pooled[f"{n}_crps"]).std(ddof=1) / np.sqrt(len(pooled)) / rw.mean()
        ratio = np.exp(np.mean(np.log(1 - table[f"{n}_skill"].astype(float))))
        parts.append(f"{n} {1 - pooled[f'{n}_crps'].mean() / rw.mean():+.3f} (se {se:.3f}, gmean ratio {ratio:.3f})")
    print("\nAll series pooled, skill (se; geometric mean of per-series CRPS ratios): " + ", ".join(parts))


if __name__ == "__main__":
    main()
