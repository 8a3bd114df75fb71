"""Scoring throughput: seconds to score 1,000,000 forecast steps into Postgres.

    .venv/bin/python bench/score.py [--steps 1000000] [--samples 32] [--database-url URL]

Builds a fresh database on the local server (127.0.0.1:5432) unless --database-url is given: 23 instruments
with hourly candles and enough hourly forecasts (24 steps, ``--samples`` sample paths each) to make
``--steps`` scoreable steps. Forecasts are generated inside Postgres (setup time is reported, not
benchmarked). Then ``run_scoring`` runs once over all of them and the phases are timed: listing the
backlog, reading the steps, the candles behind each forecast (the random walk's volatility) and the sample
paths, computing the metrics (fair CRPS, the random walk's CRPS, ...), writing ``signal_evaluations`` (and
settling the backlog), recomputing ``signal_performance`` (per step, with Diebold–Mariano tests).
The phases overlap (the next chunk is read while one is scored), so their sum exceeds the total. The goal
here is under 10 s for 1,000,000 steps.

``--steady N`` measures the steady state instead: forecasts of ``--pred-len`` steps (120: hourly production), all
but the last ``N`` hours scored in one run (not timed), then ``N`` hourly runs, each scoring the step of every
pending forecast whose candle just closed (one step of ``pred_len`` forecasts per symbol), timed per run and per
phase. Each run reads only those steps' sample columns (``store.evaluations.prediction_samples`` with step
ranges: Postgres slices the arrays), not whole paths.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from candlecast.config import DEFAULT_UNIVERSE, Settings
from candlecast.jobs import scoring
from candlecast.jobs.scoring import run_scoring
from candlecast.store import create_engine_for, upgrade
from candlecast.store import evaluations as store_evaluations
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database
from candlecast.store.evaluations import count_evaluations

START = datetime(2024, 1, 1, tzinfo=UTC)


def build(engine, steps: int, samples: int, pred_len: int) -> tuple[int, datetime]:  # type: ignore[no-untyped-def]
    symbols = list(DEFAULT_UNIVERSE)
    per_symbol = -(-steps // (len(symbols) * pred_len))  # forecasts per symbol, one per hour
    hours = per_symbol + pred_len + 1
    rng = np.random.default_rng(0)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, c) for s, c in DEFAULT_UNIVERSE.items()])
        for symbol in symbols:
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, hours)))
            frame = pd.DataFrame({"ts": pd.date_range(START, periods=hours, freq="h", tz="UTC"), "close": close})
            upsert_candles(conn, symbol, "1h", frame)
    # Forecasts: the slot at hour k forecasts hours k..k+23 around the close of hour k-1.
    with engine.begin() as conn:
        conn.exec_driver_sql(
            """
            INSERT INTO ml_predictions (symbol, timeframe, model_name, as_of, pred_len, target_ts,
                p10, p50, p90, samples, last_close)
            SELECT c.symbol, '1h', 'bench', c.ts + interval '1 hour', %(h)s,
                array(SELECT c.ts + make_interval(hours => 1 + h) FROM generate_series(0, %(h)s - 1) h),
                array_fill(c.close * 0.99, ARRAY[%(h)s]), array_fill(c.close, ARRAY[%(h)s]),
                array_fill(c.close * 1.01, ARRAY[%(h)s]),
                array(SELECT array(SELECT (c.close * (1 + 0.02 * (random() - 0.5)) + 0 * m)::real
                                   FROM generate_series(1, %(h)s) h)
                      FROM generate_series(1, %(m)s) m),
                c.close
            FROM ohlcv_1h c
            WHERE c.ts < %(start)s::timestamptz + make_interval(hours => %(n)s)
            """,
            {"h": pred_len, "m": samples, "n": per_symbol, "start": START},
        )
    with engine.connect() as conn:  # planner statistics, as autovacuum keeps them in a running database
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    return per_symbol * len(symbols), START + timedelta(hours=hours + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--pred-len", type=int, help="steps per forecast (default 24; 120 with --steady)")
    parser.add_argument("--steady", type=int, default=0, help="time this many hourly runs of the steady state")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    pred_len = args.pred_len or (120 if args.steady else 24)

    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_bench"))
        if args.steady:
            steady(args.steps, args.samples, pred_len, args.steady, url)
        else:
            run(args.steps, args.samples, pred_len, url)


def setup(engine, steps: int, samples: int, pred_len: int) -> tuple[int, datetime]:  # type: ignore[no-untyped-def]
    upgrade(engine)
    started = time.perf_counter()
    n_predictions, end = build(engine, steps, samples, pred_len)
    print(f"setup: {n_predictions} forecasts x {pred_len} steps, {samples} samples each, "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return n_predictions, end


def steady(steps: int, samples: int, pred_len: int, runs: int, url: str) -> None:
    engine = create_engine_for(url)
    try:
        n_predictions, _ = setup(engine, steps, samples, pred_len)
        per_symbol = n_predictions // len(DEFAULT_UNIVERSE)  # one forecast an hour from START
        if per_symbol < pred_len + runs:
            raise SystemExit(f"--steps too few for a steady state: {per_symbol} forecasts a symbol, "
                             f"at least pred_len + runs = {pred_len + runs} needed")  # fmt: skip
        settings = Settings()
        first = START + timedelta(hours=per_symbol - runs)  # forecasts keep coming after it, pred_len pending each hour
        started = time.perf_counter()
        backfill = run_scoring(settings, engine, "1h", as_of=first)
        print(
            f"backfill (not the steady state): {backfill.steps_scored} steps in {time.perf_counter() - started:.1f} s"
        )
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        phases = _instrument()
        seconds, scored = [], []
        for k in range(1, runs + 1):
            started = time.perf_counter()
            result = run_scoring(settings, engine, "1h", as_of=first + timedelta(hours=k))
            seconds.append(time.perf_counter() - started)
            scored.append(result.steps_scored)
        print(f"{runs} hourly runs: {statistics.mean(scored):,.0f} steps each (one per pending forecast), "
              f"{statistics.mean(seconds):.2f} s per run (min {min(seconds):.2f}, max {max(seconds):.2f})")  # fmt: skip
        for phase, total in phases.items():
            print(f"  {phase:<24} {total / runs:6.3f} s per run")
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        engine.dispose()


def run(steps: int, samples: int, pred_len: int, url: str) -> None:
    engine = create_engine_for(url)
    try:
        _, end = setup(engine, steps, samples, pred_len)

        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        phases = _instrument()
        settings = Settings()
        started = time.perf_counter()
        result = run_scoring(settings, engine, "1h", as_of=end)
        total = time.perf_counter() - started
        written = count_evaluations(engine)
        print(f"scored {result.steps_scored} steps of {result.predictions_scored} forecasts in {total:.2f} s "
              f"({result.steps_scored / total:,.0f} steps/s); rows in signal_evaluations: {written}")  # fmt: skip
        for phase, seconds in phases.items():
            print(f"  {phase:<24} {seconds:6.2f} s")
        again = time.perf_counter()
        rerun = run_scoring(settings, engine, "1h", as_of=end)
        print(f"re-run (nothing left to score): {rerun.steps_scored} steps in {time.perf_counter() - again:.2f} s")
        # The same work once more, with the forecasts already read once (caches warm, hint bits set), as in a
        # database whose forecasts were written an hour or a day before they are scored.
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE signal_evaluations")
            conn.exec_driver_sql("INSERT INTO scoring_backlog SELECT id, timeframe FROM ml_predictions")
        phases.clear()
        started = time.perf_counter()
        warm = run_scoring(settings, engine, "1h", as_of=end)
        total = time.perf_counter() - started
        print(f"again from scratch, warm: {warm.steps_scored} steps in {total:.2f} s")
        for phase, seconds in phases.items():
            print(f"  {phase:<24} {seconds:6.2f} s")
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        engine.dispose()


def _instrument() -> dict[str, float]:
    """Wrap the scoring phases with timers (the names scoring.py calls)."""
    phases: dict[str, float] = {}

    def timed(label: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

        return wrapper

    scoring.scoring_candidates = timed("list backlog", store_evaluations.scoring_candidates)
    scoring.unscored_steps = timed("read steps (COPY)", store_evaluations.unscored_steps)
    scoring.closes_before = timed("read candle history", store_evaluations.closes_before)
    scoring.prediction_samples = timed("read samples", store_evaluations.prediction_samples)
    scoring.score_steps = timed("compute metrics (numpy)", scoring.score_steps)
    scoring.write_evaluations = timed("write scores (COPY)", store_evaluations.write_evaluations)
    scoring.refresh_performance = timed("refresh performance", scoring.refresh_performance)
    return phases


if __name__ == "__main__":
    main()
