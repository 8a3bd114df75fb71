"""The touch-question summary of ``/api/v1/performance`` on request vs precomputed (``path_performance``).

    .venv/bin/python bench/path_performance.py [--symbols 23] [--days 365] [--models 1] [--repeat 3] [--url URL]

In a throwaway database (``store.db.temporary_database``, migrated to head; or ``--url``, an empty migrated one) it
bulk-loads synthetic graded touch questions (``path_evaluations``; binary COPY into a staging table, then one
INSERT per series): ``--symbols`` instruments, one hourly forecast per symbol and hour for ``--days`` days by each
of ``--models`` models, six levels each (the grid), 32 paths, a 120-step horizon; a year of 23 instruments is 1.2
million rows a model. Then it prints, as the median of ``--repeat`` runs:

- on request (what ``performance_payload`` did before, per cache miss): ``store.path_evaluations.graded_touches``
  then ``jobs.touches.touch_summary`` (``paths.touch_scores``) per (model, timeframe), for every symbol and for
  one, in both windows;
- precomputed: ``performance_payload`` itself now (the whole answer: rows, calibration and the stored
  ``path_scores``) for the same four questions;
- what the scoring job pays instead, once per run: ``jobs.touches.refresh_path_performance`` of the timeframe
  (every scope and window).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from candlecast.config import GatewaySettings
from candlecast.gateway.params import PerformanceParams
from candlecast.gateway.payloads.performance import performance_payload
from candlecast.jobs.touches import refresh_path_performance, touch_summary
from candlecast.paths import TOUCH_GRID
from candlecast.store import create_engine_for
from candlecast.store._copy import binary_copy
from candlecast.store._sql import cursor
from candlecast.store.candles import Instrument, upsert_instruments
from candlecast.store.db import temporary_database
from candlecast.store.path_evaluations import graded_touches

START = datetime(2025, 1, 1, tzinfo=UTC)
HORIZON = 120
PATHS = 32


def load(engine: Any, symbols: list[str], days: int, models: list[str]) -> int:
    """Graded questions of one forecast per (symbol, model, hour), written with binary COPY; returns the rows."""
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, "crypto") for s in symbols])
    rng = np.random.default_rng(0)
    origins = pd.date_range(START, periods=days * 24, freq="h", tz="UTC")
    grid = np.asarray(TOUCH_GRID)
    total, pid = 0, 0
    for model in models:
        for symbol in symbols:
            n = len(origins) * len(grid)
            p = rng.integers(0, PATHS + 1, n) / PATHS
            k = np.tile(grid, len(origins))
            stream = binary_copy([
                ("prediction_id", ">i8", np.repeat(np.arange(pid + 1, pid + 1 + len(origins)), len(grid))),
                ("k", ">i2", k.astype(np.int16)),
                ("as_of", "timestamptz", origins.repeat(len(grid))),
                ("p_touch", ">f8", p),
                ("p_touch_rw", ">f8", np.minimum(1.0, 0.32 / np.abs(k))),
                ("touched", "?", rng.random(n) < 0.8 * p + 0.05),
            ])  # fmt: skip
            with engine.begin() as conn, cursor(conn) as cur:  # staged, then labelled in SQL (few text columns)
                cur.execute(
                    "CREATE TEMP TABLE staged (prediction_id int8, k int2, as_of timestamptz, p_touch float8, "
                    "p_touch_rw float8, touched bool) ON COMMIT DROP"
                )
                with cur.copy("COPY staged FROM STDIN (FORMAT binary)") as copy:
                    copy.write(stream)
                cur.execute(
                    "INSERT INTO path_evaluations (prediction_id, k, symbol, timeframe, model_name, as_of, horizon, "
                    "level, side, p_touch, p_touch_rw, paths, touched, uses) SELECT prediction_id, k, %s, '1h', %s, "
                    "as_of, %s, 100 * exp(0.01 * k), CASE WHEN k > 0 THEN 'above' ELSE 'below' END, p_touch, "
                    "p_touch_rw, %s, touched, 'close' FROM staged",
                    (symbol, model, HORIZON, PATHS),
                )
            pid += len(origins)
            total += n
    with engine.begin() as conn, cursor(conn) as cur:
        cur.execute("ANALYZE path_evaluations")
    return total


def median_s(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(url: str, args: argparse.Namespace) -> None:
    engine = create_engine_for(url)
    symbols = [f"SYM{i:02d}" for i in range(args.symbols)]
    models = [f"model{i}" for i in range(args.models)]
    t = time.perf_counter()
    rows = load(engine, symbols, args.days, models)
    print(f"loaded {rows:,} graded questions ({args.symbols} symbols x {args.days} days hourly x {args.models} "
          f"model(s) x {len(TOUCH_GRID)} levels) in {time.perf_counter() - t:.1f} s")  # fmt: skip
    refresh = median_s(lambda: refresh_path_performance(engine, "1h"), args.repeat)
    gw = GatewaySettings()
    print("| question | on request (s) | precomputed payload (s) |")
    print("|---|---:|---:|")
    for symbol in (None, symbols[0]):
        for window in ("all", "trailing_30d"):

            def live(symbol: str | None = symbol, window: str = window) -> list[dict[str, Any]]:
                return [touch_summary(g) for g in graded_touches(engine, symbol=symbol, window=window)]

            params = PerformanceParams(symbol, None, None, window)
            before = median_s(live, args.repeat)
            after = median_s(lambda p=params: performance_payload(engine, p, gw), args.repeat)  # type: ignore[misc]
            print(f"| symbol={symbol or '*'} window={window} | {before:.3f} | {after:.4f} |")
    print(f"refresh_path_performance('1h'), every scope and window, once per scoring run: {refresh:.2f} s")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=23)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--models", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", help="an empty database migrated to head (default: a throwaway one)")
    args = parser.parse_args()
    load_avg = os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    if args.url:
        run(args.url, args)
        return
    with temporary_database(prefix="candlecast_bench") as url:
        run(url, args)


if __name__ == "__main__":
    main()
