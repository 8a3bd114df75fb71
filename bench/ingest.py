"""Ingest throughput: a 1,000,000-row hourly candle file into Postgres (read, validate, COPY + upsert).

    .venv/bin/python bench/ingest.py [--rows 1000000] [--database-url URL]

Uses a fresh database on the local server (127.0.0.1:5432) unless --database-url is given.
Prints candles/s for each phase and in total; the goal here is >= 200k rows/s end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from candlecast.ingest.candles import ingest_candles, read_candle_file, validate_candles
from candlecast.store import create_engine_for, upgrade
from candlecast.store.db import temporary_database


def synthetic_file(rows: int, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    ts = pd.date_range("1900-01-01", periods=rows, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, rows)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.001, rows)) * close
    frame = pd.DataFrame({
        "ts": ts, "open": open_, "high": np.maximum(open_, close) + spread,
        "low": np.minimum(open_, close) - spread, "close": close,
        "volume": rng.gamma(2, 10, rows), "amount": np.nan,
    })  # fmt: skip
    path = folder / "candles.parquet"
    frame.to_parquet(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_bench"))
        run(args.rows, url)


def run(rows: int, url: str) -> None:
    engine = create_engine_for(url)
    upgrade(engine)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = synthetic_file(rows, Path(tmp))
            t0 = time.perf_counter()
            frame = read_candle_file(path)
            t1 = time.perf_counter()
            valid, errors = validate_candles(frame, "1h")
            t2 = time.perf_counter()
            assert not errors, errors[:3]
            result = ingest_candles(engine, path, "BENCH", "1h", "crypto", frame=frame)
            t3 = time.perf_counter()
            # a second load of the same file: every row conflicts and is updated (idempotent re-run)
            ingest_candles(engine, path, "BENCH", "1h", "crypto", frame=frame)
            t4 = time.perf_counter()
        n = result.written
        print(f"rows: {n:,}")
        print(f"read parquet:          {t1 - t0:6.2f} s  {n / (t1 - t0):>12,.0f} rows/s")
        print(f"validate:              {t2 - t1:6.2f} s  {n / (t2 - t1):>12,.0f} rows/s")
        print(f"validate + write (new):{t3 - t2:6.2f} s  {n / (t3 - t2):>12,.0f} rows/s")
        print(f"re-load (all upserts): {t4 - t3:6.2f} s  {n / (t4 - t3):>12,.0f} rows/s")
        print(f"end to end (read+validate+write): {n / (t3 - t0):,.0f} rows/s")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
