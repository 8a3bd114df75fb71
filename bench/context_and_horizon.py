"""How many candles a forecast needs, and what a longer horizon costs (issue 13).

    .venv/bin/python bench/context_and_horizon.py [--origins 300] [--samples 100] [--slots 4]
                                                   [--quick] [--skip-a | --skip-b] [--database-url URL]

Part A, the minimum context (no database). Walk-forward with the statistical baseline (the default
``BaselineForecaster``, the only model with weights on a machine without Kronos checkpoints; ``--model`` loads
another configured model in-process, e.g. ``kronos-small`` where its weights exist) on real shipped
series from ``data/sample`` (read with ``candlecast.ingest``): hourly BTCUSDT and EURUSD; daily SPY, QQQ, NVDA,
GOLD, WTI and EURUSD. At ``--origins`` evenly spaced origins per series, every context length of ``--contexts``
is forecast from the same origin with the same seed (a paired comparison), ``H`` steps ahead (120 hourly, 30
daily), and scored against the realised closes:

- p10-p90 coverage (nominal 0.80) with two standard errors: ``se_bin`` treats every scored step as an
  independent Bernoulli trial (it understates: the steps of one forecast, and overlapping forecasts, are
  correlated); ``se_hac`` is a Newey-West standard error of the per-origin coverage (Bartlett kernel, lag
  twice the number of origins one horizon spans), pooled over series as if the series were independent;
- ``dcov``: coverage minus the coverage of the longest context at the same origins, with its HAC error;
- mean CRPS (``candlecast.scores.crps_from_samples`` over ``--samples`` paths) in basis points of the last
  close, so series can be averaged, and ``crps_rel``: the geometric mean over series of CRPS / CRPS of the
  longest context.

Both the first 24 (1h) / 10 (1d) steps, the horizons served before, and the whole horizon are reported, then
coverage and CRPS per block of steps at the longest context.

Part B, the cost of the horizon (a throwaway database on 127.0.0.1:5432 unless ``--database-url``). The 23
default instruments with synthetic random-walk candles (as ``bench/batch.py``); for pred_len 24 vs 120 (1h)
and 10 vs 30 (1d): the in-process baseline batch (``LocalTransport``, loaded once) at ``--slots`` consecutive
slots with the default job settings otherwise (context 512, 32 samples), the stored bytes per forecast
(``pg_column_size`` of ``samples`` and of the whole row, and the table with its TOAST and indexes per row), then
one scoring run over those forecasts (``run_scoring``, as of when every step had closed) and the bytes of
``signal_evaluations`` per forecast.

The whole run takes 2-4 minutes on a busy 2-core machine; ``--quick`` (80 origins, 2 slots) about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.config import DEFAULT_UNIVERSE, Settings
from candlecast.errors import CandlecastError
from candlecast.inference.transports import QUANTILE_LEVELS, LocalTransport
from candlecast.ingest.candles import read_candle_file, validate_candles
from candlecast.ingest.sample import load_sample_manifest
from candlecast.jobs.batch import run_batch
from candlecast.jobs.scoring import run_scoring
from candlecast.models.base import OHLCV_COLUMNS, Forecaster, SeriesInput
from candlecast.models.baseline import BaselineForecaster
from candlecast.scores import crps_from_samples
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, latest_candles_many, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database

SERIES: dict[str, tuple[str, ...]] = {
    "1h": ("BTCUSDT", "EURUSD"),
    "1d": ("SPY", "QQQ", "NVDA", "GOLD", "WTI", "EURUSD"),
}
CONTEXTS: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128, 256, 512)
HORIZONS: dict[str, tuple[int, int]] = {"1h": (24, 120), "1d": (10, 30)}  # (served before, proposed)
STEP_BLOCKS: dict[str, int] = {"1h": 24, "1d": 10}


# -- Part A: coverage and CRPS by context length ---------------------------------------------------------------


@dataclass
class SeriesScores:
    """One series' walk-forward scores: ``in_band`` and ``crps_bp`` have shape (contexts, origins, H)."""

    name: str
    timeframe: str
    origins: np.ndarray
    in_band: np.ndarray
    crps_bp: np.ndarray

    @property
    def spacing(self) -> float:
        return float(np.median(np.diff(self.origins))) if len(self.origins) > 1 else float("inf")


def score_series(
    model: Forecaster,
    sample_dir: Path,
    symbol: str,
    timeframe: str,
    contexts: Sequence[int],
    n_origins: int,
    samples: int,
) -> SeriesScores:
    """Forecast every context length from the same origins (same seed per origin) and score each step."""
    settings = Settings()
    entry = next(f for f in load_sample_manifest(sample_dir) if f.symbol == symbol and f.timeframe == timeframe)
    frame, errors = validate_candles(read_candle_file(entry.path), timeframe)
    if errors:
        raise SystemExit(f"{entry.path}: {len(errors)} invalid rows")
    ohlcv = frame[list(OHLCV_COLUMNS)].to_numpy(np.float64)
    ts = pd.DatetimeIndex(frame["ts"])
    close = ohlcv[:, 3]
    calendar = settings.market_calendars.get(entry.asset_class, "24/7")
    horizon = HORIZONS[timeframe][1]
    longest = max(contexts)
    origins = np.unique(np.linspace(longest, len(frame) - horizon, n_origins).astype(int))
    in_band = np.zeros((len(contexts), len(origins), horizon), dtype=bool)
    crps = np.zeros((len(contexts), len(origins), horizon))
    for k, origin in enumerate(origins):
        batch = [
            SeriesInput(
                timestamps=ts[origin - n : origin], ohlcv=ohlcv[origin - n : origin], symbol=symbol,
                timeframe=timeframe, calendar=calendar, asset_class=entry.asset_class,
            )
            for n in contexts
        ]  # fmt: skip
        y = close[origin : origin + horizon]
        c0 = close[origin - 1]
        forecasts = model.forecast(batch, horizon, samples, QUANTILE_LEVELS, seed=[k] * len(contexts))
        for c, f in enumerate(forecasts):
            in_band[c, k] = (f.p10 <= y) & (y <= f.p90)
            crps[c, k] = crps_from_samples(f.samples.T, y) / c0 * 1e4
    return SeriesScores(f"{symbol} {timeframe}", timeframe, origins, in_band, crps)


def hac_variance_of_mean(values: np.ndarray, lag: int) -> float:
    """Newey-West (Bartlett) variance of the mean of a serially correlated sequence."""
    x = values - values.mean()
    n = len(x)
    var = float(x @ x) / n
    for k in range(1, min(lag, n - 1) + 1):
        var += 2.0 * (1.0 - k / (lag + 1)) * float(x[k:] @ x[:-k]) / n
    return max(var, 0.0) / n


def summarise(scores: list[SeriesScores], contexts: Sequence[int], steps: int) -> pd.DataFrame:
    """One row per context: pooled coverage with its errors, paired difference to the longest context, CRPS."""
    rows = []
    ref = len(contexts) - 1
    total_origins = sum(len(s.origins) for s in scores)
    for c, n in enumerate(contexts):
        cover = np.concatenate([s.in_band[c, :, :steps].ravel() for s in scores])
        p = float(cover.mean())
        var_hac = var_diff = 0.0
        for s in scores:
            weight = len(s.origins) / total_origins
            lag = 2 * math.ceil(steps / s.spacing)
            per_origin = s.in_band[c, :, :steps].mean(axis=1)
            var_hac += weight**2 * hac_variance_of_mean(per_origin, lag)
            diff = per_origin - s.in_band[ref, :, :steps].mean(axis=1)
            var_diff += weight**2 * hac_variance_of_mean(diff, lag)
        ratios = [s.crps_bp[c, :, :steps].mean() / s.crps_bp[ref, :, :steps].mean() for s in scores]
        rows.append(
            {
                "context": n,
                "steps": cover.size,
                "coverage": p,
                "se_bin": math.sqrt(p * (1 - p) / cover.size),
                "se_hac": math.sqrt(var_hac),
                "dcov": p - float(np.concatenate([s.in_band[ref, :, :steps].ravel() for s in scores]).mean()),
                "se_dcov": math.sqrt(var_diff),
                "crps_bp": float(np.concatenate([s.crps_bp[c, :, :steps].ravel() for s in scores]).mean()),
                "crps_rel": float(np.exp(np.mean(np.log(ratios)))),
            }
        )
    return pd.DataFrame(rows).set_index("context")


def by_step_block(scores: list[SeriesScores], c: int, block: int) -> pd.DataFrame:
    """Coverage and CRPS per block of horizon steps, for context index ``c``."""
    horizon = scores[0].in_band.shape[2]
    rows = []
    for start in range(0, horizon, block):
        sl = slice(start, min(start + block, horizon))
        rows.append(
            {
                "steps": f"{start + 1}-{sl.stop}",
                "coverage": float(np.concatenate([s.in_band[c, :, sl].ravel() for s in scores]).mean()),
                "crps_bp": float(np.concatenate([s.crps_bp[c, :, sl].ravel() for s in scores]).mean()),
            }
        )
    return pd.DataFrame(rows).set_index("steps")


def part_a(model: Forecaster, sample_dir: Path, contexts: Sequence[int], n_origins: int, samples: int) -> None:
    print(f"\n== Part A: minimum context ({model.name} {model.version}, {n_origins} origins per series, "
          f"{samples} samples for CRPS) ==")  # fmt: skip
    for timeframe, symbols in SERIES.items():
        started = time.perf_counter()
        scores = [score_series(model, sample_dir, s, timeframe, contexts, n_origins, samples) for s in symbols]
        short, long = HORIZONS[timeframe]
        seconds = time.perf_counter() - started
        print(f"\n{timeframe}: {', '.join(s.name for s in scores)}; origins {[len(s.origins) for s in scores]}, "
              f"spacing {[round(s.spacing, 1) for s in scores]} candles; {seconds:.1f} s")  # fmt: skip
        for steps in (short, long):
            print(f"\n{timeframe}, steps 1-{steps} (dcov, crps_rel: against context {max(contexts)}):")
            print(summarise(scores, contexts, steps).round(4).to_string())
        print(f"\n{timeframe}, coverage of each series, steps 1-{long}:")
        table = pd.DataFrame(
            {s.name: s.in_band[:, :, :long].mean(axis=(1, 2)) for s in scores}, index=pd.Index(contexts, name="context")
        )
        print(table.round(3).to_string())
        for c in (0, contexts.index(32) if 32 in contexts else 0, len(contexts) - 1):
            print(f"\n{timeframe}, by step, context {contexts[c]}:")
            print(by_step_block(scores, c, STEP_BLOCKS[timeframe]).round(4).to_string())


# -- Part B: the cost of the horizon ---------------------------------------------------------------------------

FIRST_SLOT = {"1h": datetime(2024, 3, 6, 12, tzinfo=UTC), "1d": datetime(2024, 3, 5, tzinfo=UTC)}  # Wed, Tue
# Scoring runs this long after the last slot: every step has closed by then, on every trading calendar (120
# hourly steps of an XNYS session are about 18 sessions; 30 daily ones about 43 days).
SCORE_AFTER = {"1h": timedelta(days=40), "1d": timedelta(days=75)}


def load_universe(engine: Engine, slots: int) -> None:
    """Random-walk candles for the 23 default instruments: hourly every hour, daily on weekdays (every day for
    crypto), from well before the first slot to after the last target."""
    rng = np.random.default_rng(0)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, c) for s, c in DEFAULT_UNIVERSE.items()])
        for timeframe, sigma in (("1h", 0.005), ("1d", 0.02)):
            step = timedelta(hours=1) if timeframe == "1h" else timedelta(days=1)
            first = FIRST_SLOT[timeframe] - 700 * step
            last = FIRST_SLOT[timeframe] + slots * step + SCORE_AFTER[timeframe]
            all_ts = pd.date_range(first, last, freq="h" if timeframe == "1h" else "D", inclusive="left")
            for symbol, asset_class in DEFAULT_UNIVERSE.items():
                ts = all_ts if timeframe == "1h" or asset_class == "crypto" else all_ts[all_ts.dayofweek < 5]
                n = len(ts)
                close = 100 * np.exp(np.cumsum(rng.normal(0, sigma, n)))
                open_ = np.r_[100.0, close[:-1]]
                volume = rng.uniform(10, 100, n)
                upsert_candles(conn, symbol, timeframe, pd.DataFrame({
                    "ts": ts, "open": open_, "high": np.maximum(open_, close) * 1.002,
                    "low": np.minimum(open_, close) * 0.998, "close": close, "volume": volume,
                    "amount": volume * close,
                }))  # fmt: skip


def model_seconds(
    engine: Engine, settings: Settings, transport: LocalTransport, timeframe: str, pred_len: int, runs: int = 5
) -> float:
    """The median time of the model call alone: the 23 contexts of the first slot in one request."""
    cfg = settings.jobs
    context = cfg.context_1h if timeframe == "1h" else cfg.context_1d
    frames = latest_candles_many(engine, list(DEFAULT_UNIVERSE), timeframe, context, FIRST_SLOT[timeframe])
    series = [
        SeriesInput(
            timestamps=pd.DatetimeIndex(frame["ts"]), ohlcv=frame[list(OHLCV_COLUMNS)].to_numpy(np.float64),
            symbol=symbol, timeframe=timeframe, calendar=settings.market_calendars[DEFAULT_UNIVERSE[symbol]],
        )
        for symbol, frame in frames.items()
    ]  # fmt: skip
    seconds = []
    for k in range(runs):
        t0 = time.perf_counter()
        transport.forecast(series, pred_len, cfg.sample_count, k)
        seconds.append(time.perf_counter() - t0)
    return float(np.median(seconds))


def sizes(engine: Engine) -> dict[str, float]:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT count(*), avg(pg_column_size(samples)), avg(pg_column_size(m.*)), "
            "pg_total_relation_size('ml_predictions') FROM ml_predictions m"
        ).one()
        evals = conn.exec_driver_sql(
            "SELECT count(*), pg_total_relation_size('signal_evaluations'), avg(pg_column_size(e.*)) "
            "FROM signal_evaluations e"
        ).one()
    n = max(int(row[0]), 1)
    return {
        "forecasts": int(row[0]),
        "samples_B": float(row[1] or 0),
        "row_B": float(row[2] or 0),
        "table_B_per": int(row[3]) / n,
        "eval_rows_per": int(evals[0]) / n,
        "eval_B_per": int(evals[1]) / n,
        "eval_row_B": float(evals[2] or 0),
    }


def part_b(url: str, slots: int) -> None:
    engine = create_engine_for(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        load_universe(engine, slots)
        print(f"\n== Part B: cost of the horizon ({len(DEFAULT_UNIVERSE)} instruments, baseline in-process, "
              f"{slots} slots per horizon; candles loaded in {time.perf_counter() - started:.1f} s) ==")  # fmt: skip
        transport = LocalTransport(BaselineForecaster())
        rows: list[dict[str, Any]] = []
        for timeframe, pred_lens in HORIZONS.items():
            step = timedelta(hours=1) if timeframe == "1h" else timedelta(days=1)
            for pred_len in pred_lens:
                with engine.begin() as conn:
                    conn.exec_driver_sql("TRUNCATE signal_evaluations, ml_predictions RESTART IDENTITY CASCADE")
                settings = Settings(models="baseline", jobs={f"pred_len_{timeframe}": pred_len})
                cfg = settings.jobs
                seconds, written = [], 0
                for k in range(slots):
                    t0 = time.perf_counter()
                    result = run_batch(settings, engine, timeframe, "baseline", as_of=FIRST_SLOT[timeframe] + k * step,
                                       transport=transport, progress=False)  # fmt: skip
                    seconds.append(time.perf_counter() - t0)
                    written += len(result.ok)
                t0 = time.perf_counter()
                scored = run_scoring(settings, engine, timeframe, as_of=FIRST_SLOT[timeframe] + slots * step
                                     + SCORE_AFTER[timeframe],
                                     since=FIRST_SLOT[timeframe] - step)  # fmt: skip
                score_s = time.perf_counter() - t0
                rows.append({
                    "tf": timeframe, "pred_len": pred_len, "context": cfg.context_1h if timeframe == "1h"
                    else cfg.context_1d, "samples": cfg.sample_count, "written": written,
                    "batch_s_median": float(np.median(seconds)), "batch_s_max": max(seconds),
                    "model_s": model_seconds(engine, settings, transport, timeframe, pred_len),
                    **sizes(engine), "scored_steps": scored.steps_scored, "score_s": score_s,
                })  # fmt: skip
        table = pd.DataFrame(rows).set_index(["tf", "pred_len"])
        pd.set_option("display.width", 200)
        print(table.round(3).to_string())
        for r in rows:
            timeframe, pred_len = r["tf"], r["pred_len"]
            per_year = len(DEFAULT_UNIVERSE) * (24 * 365 if timeframe == "1h" else 365)
            total = (r["table_B_per"] + r["eval_B_per"]) * per_year / 1e9
            print(f"{timeframe} pred_len {pred_len:>3}: {r['table_B_per'] / 1e3:.1f} kB forecast + "
                  f"{r['eval_B_per'] / 1e3:.1f} kB scores per forecast; at most {per_year:,} forecasts a year "
                  f"per model ({len(DEFAULT_UNIVERSE)} instruments, every slot) = {total:.2f} GB a year")  # fmt: skip
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample-dir", type=Path, default=Path("data/sample"))
    parser.add_argument("--model", default="baseline", help="the model of Part A (Part B always uses the baseline)")
    parser.add_argument("--origins", type=int, default=300, help="forecast origins per series (Part A)")
    parser.add_argument("--samples", type=int, default=100, help="sample paths per forecast for CRPS (Part A)")
    parser.add_argument("--contexts", default=",".join(map(str, CONTEXTS)), help="context lengths (Part A)")
    parser.add_argument("--slots", type=int, default=4, help="batch slots per horizon (Part B)")
    parser.add_argument("--quick", action="store_true", help="80 origins and 2 slots")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--skip-b", action="store_true")
    parser.add_argument("--database-url", help="an empty database to use for Part B (default: a throwaway one)")
    args = parser.parse_args()
    if args.quick:
        args.origins, args.slots = min(args.origins, 80), min(args.slots, 2)
    contexts = sorted({int(c) for c in args.contexts.split(",")})
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, load average {load}")
    started = time.perf_counter()
    if not args.skip_a:
        try:
            model = LocalTransport.load(Settings(), args.model).forecaster
        except CandlecastError as exc:  # e.g. Kronos without its weights
            raise SystemExit(str(exc)) from None
        part_a(model, args.sample_dir, contexts, args.origins, args.samples)
    if not args.skip_b:
        with contextlib.ExitStack() as stack:
            url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_bench"))
            part_b(url, args.slots)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{time.perf_counter() - started:.1f} s in all; load average at the end {load}")


if __name__ == "__main__":
    main()
