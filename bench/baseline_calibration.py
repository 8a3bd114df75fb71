"""Walk-forward calibration of the baseline variants on the sample candles.

For every candle file in data/sample/candles, forecasts are made at evenly spaced origins from the
preceding context (512 candles, or what exists) for 24 steps (1h) or 10 steps (1d), and scored against
the realised closes: p10-p90 coverage (nominal 0.80) and p05-p95 coverage (0.90), CRPS from 256
samples (scoringrules, estimator "pwm"), expressed in basis points of the last close so instruments
can be averaged, and pinball losses at 0.1/0.9.

    .venv/bin/python bench/baseline_calibration.py [--origins 100] [--data-dir data/sample/candles]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scoringrules as sr

from candlecast.config import Settings
from candlecast.models.base import SeriesInput
from candlecast.models.baseline import BaselineConfig, BaselineForecaster
from candlecast.models.calendars import calendar_for

VARIANTS: dict[str, BaselineConfig] = {
    "gaussian (= statsforecast Naive)": BaselineConfig(method="gaussian"),
    "gaussian-ewma hl10": BaselineConfig(method="gaussian-ewma", halflife=10),
    "gaussian-ewma hl30": BaselineConfig(method="gaussian-ewma", halflife=30),
    "gaussian-ewma hl100": BaselineConfig(method="gaussian-ewma", halflife=100),
    "bootstrap hl10": BaselineConfig(method="bootstrap", halflife=10),
    "bootstrap hl30": BaselineConfig(method="bootstrap", halflife=30),
    "bootstrap hl100": BaselineConfig(method="bootstrap", halflife=100),
}
PRED_LEN = {"1h": 24, "1d": 10}
SAMPLES = 256


def load(path: Path) -> tuple[str, str, pd.DataFrame]:
    symbol, timeframe = path.stem.rsplit("_", 1)
    return symbol, timeframe, pd.read_parquet(path).sort_values("ts").reset_index(drop=True)


def score_file(path: Path, settings: Settings, n_origins: int, context: int) -> list[dict[str, object]]:
    symbol, timeframe, df = load(path)
    pred_len = PRED_LEN[timeframe]
    ohlcv = df[["open", "high", "low", "close", "volume", "amount"]].to_numpy(np.float64)
    ts = pd.DatetimeIndex(df["ts"])
    calendar = calendar_for(symbol, settings.universe, settings.market_calendars)
    first = min(context, len(df) // 3)
    origins = np.unique(np.linspace(first, len(df) - pred_len, n_origins).astype(int))
    rows = []
    for name, config in VARIANTS.items():
        model = BaselineForecaster(config=config)
        crps, cover, cover90, pin10, pin90, cover_first, cover_last = [], [], [], [], [], [], []
        for k, origin in enumerate(origins):
            lo = max(0, origin - context)
            s = SeriesInput(
                timestamps=ts[lo:origin],
                ohlcv=ohlcv[lo:origin],
                symbol=symbol,
                timeframe=timeframe,
                calendar=calendar,
            )
            f = model.forecast([s], pred_len, SAMPLES, (0.05, 0.1, 0.5, 0.9, 0.95), seed=k)[0]
            y = ohlcv[origin : origin + pred_len, 3]
            c0 = s.last_close
            crps.append(sr.crps_ensemble(y, f.samples.T, estimator="pwm") / c0 * 1e4)  # (H,) bp
            inside = (f.p10 <= y) & (y <= f.p90)
            cover.append(inside)
            cover90.append((f.quantile(0.05) <= y) & (y <= f.quantile(0.95)))
            cover_first.append(inside[0])
            cover_last.append(inside[-1])
            pin10.append(np.maximum(0.1 * (y - f.p10), -0.9 * (y - f.p10)) / c0 * 1e4)
            pin90.append(np.maximum(0.9 * (y - f.p90), -0.1 * (y - f.p90)) / c0 * 1e4)
        rows.append(
            {
                "series": f"{symbol} {timeframe}",
                "variant": name,
                "origins": len(origins),
                "crps_bp": float(np.mean(crps)),
                "coverage": float(np.mean(cover)),
                "coverage90": float(np.mean(cover90)),
                "cover_h1": float(np.mean(cover_first)),
                "cover_hH": float(np.mean(cover_last)),
                "pinball10_bp": float(np.mean(pin10)),
                "pinball90_bp": float(np.mean(pin90)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data/sample/candles"))
    parser.add_argument("--origins", type=int, default=100, help="forecast origins per series")
    parser.add_argument("--context", type=int, default=512)
    args = parser.parse_args()
    settings = Settings()
    files = sorted(args.data_dir.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no candle files in {args.data_dir}")
    started = time.perf_counter()
    rows = [row for path in files for row in score_file(path, settings, args.origins, args.context)]
    table = pd.DataFrame(rows)
    # Relative CRPS: each series' CRPS divided by the plain Gaussian random walk's, then the geometric mean.
    reference = table[table.variant.str.startswith("gaussian (")].set_index("series")["crps_bp"]
    table["rel_crps"] = table["crps_bp"] / table["series"].map(reference)
    summary = table.groupby("variant", sort=False).agg(
        crps_bp=("crps_bp", "mean"),
        rel_crps_gmean=("rel_crps", lambda r: float(np.exp(np.mean(np.log(r))))),
        coverage=("coverage", "mean"),
        coverage90=("coverage90", "mean"),
        cover_h1=("cover_h1", "mean"),
        cover_hH=("cover_hH", "mean"),
        cover_abs_err=("coverage", lambda c: float(np.mean(np.abs(c - 0.8)))),
        cover90_abs_err=("coverage90", lambda c: float(np.mean(np.abs(c - 0.9)))),
        pinball10_bp=("pinball10_bp", "mean"),
        pinball90_bp=("pinball90_bp", "mean"),
    )
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(
        f"{len(files)} series, {table.origins.iloc[:: len(VARIANTS)].sum()} origins, "
        f"{time.perf_counter() - started:.1f} s"
    )
    print("\nPer variant (means over series; coverage nominal 0.80, coverage90 nominal 0.90):")
    print(summary.round(4).to_string())
    best = summary["rel_crps_gmean"].idxmin()
    print(f"\nLowest relative CRPS: {best}")
    print(f"\nPer series, {best} vs the Gaussian random walk:")
    per_series = table[table.variant.isin([best, "gaussian (= statsforecast Naive)"])].pivot(
        index="series", columns="variant", values=["crps_bp", "coverage"]
    )
    print(per_series.round(3).to_string())


if __name__ == "__main__":
    main()
