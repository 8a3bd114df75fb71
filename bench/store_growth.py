"""History that grows: latest-forecast read latency and performance refresh time at 1e4, 1e5 and 1e6 forecasts.

    .venv/bin/python bench/store_growth.py [--sizes 10000,100000,1000000] [--symbols 100] [--reads 300]

In a throwaway database (``store.db.temporary_database``, migrated to head: monthly partitions) it bulk-loads
synthetic hourly forecasts of ``--symbols`` instruments by one model, one per symbol and hour, oldest first, each
with ``--pred-len`` steps (4) and ``--samples`` sample paths (8), so a forecast row is about 0.6 KB (real rows
carry 32 x 120 paths: about 50 KB); every step is scored (``signal_evaluations``: pred_len rows per forecast).
Rows go in with binary COPY (encoded with numpy), their month's partitions created first as the store's writers
do; the NOTIFY and scoring-backlog triggers of ``ml_predictions`` are disabled during the load (the loaded history
counts as settled), the ``forecast_heads`` one stays, and the load logs each series' oldest scored origin as
``write_evaluations`` does.

At each size it prints:

- the latest-forecast read (``store.predictions.latest_prediction``, what the gateway serves) over ``--reads``
  random symbols: p50 and p99 in ms;
- ``refresh_performance`` from scratch (``full=True``: what every refresh cost before it became incremental:
  every score of the timeframe read and aggregated);
- the steady-state hourly refresh: one more hour of forecasts and scores (one per symbol) is added, as a batch and
  a scoring run would, then ``refresh_performance`` runs incrementally (every series gained scores: each one's
  summaries and its scores from its boundary on are read, in the recent partitions only);
- the refresh after an hour in which only one series gained a forecast and scores (only that series' summaries,
  scores and rows are read and rewritten).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from candlecast.jobs.scoring import refresh_performance
from candlecast.store import create_engine_for
from candlecast.store._copy import COPY_SIGNATURE, binary_copy
from candlecast.store._sql import cursor
from candlecast.store.candles import Instrument, upsert_instruments
from candlecast.store.db import LOCAL_SERVER_URL, temporary_database
from candlecast.store.partitions import ensure_partitions, month_of
from candlecast.store.predictions import latest_prediction

START = datetime(2025, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MODEL = "walk"
_US_PER_HOUR = 3_600_000_000


def _array(ndim: int, count: int, kind: str) -> np.dtype:
    dims = [(f"{n}{i}", ">i4") for i in range(ndim) for n in ("dim", "lb")]
    return np.dtype([("ndim", ">i4"), ("nul", ">i4"), ("oid", ">i4"), *dims,
                     ("e", [("n", ">i4"), ("v", kind)], (count,))])  # fmt: skip


def _fill_array(target: np.ndarray, shape: tuple[int, ...], oid: int, values: np.ndarray, width: int) -> None:
    target["ndim"], target["nul"], target["oid"] = len(shape), 0, oid
    for i, d in enumerate(shape):
        target[f"dim{i}"], target[f"lb{i}"] = d, 1
    target["e"]["n"] = width
    target["e"]["v"] = values.reshape(len(values), -1)


def forecast_stream(ids: np.ndarray, symbols: np.ndarray, hours: np.ndarray, pred_len: int, samples: int) -> bytes:
    """Binary COPY rows of ml_predictions (id, symbol, timeframe, model_name, model_version, as_of, pred_len,
    target_ts, p10, p50, p90, samples, last_close)."""
    n = len(ids)
    rng = np.random.default_rng(int(ids[0]))
    band = _array(1, pred_len, ">f8")
    fields = [("count", ">i2"), ("l_id", ">i4"), ("id", ">i8"), ("l_sym", ">i4"), ("sym", "S5"), ("l_tf", ">i4"),
              ("tf", "S2"), ("l_model", ">i4"), ("model", f"S{len(MODEL)}"), ("l_ver", ">i4"), ("l_asof", ">i4"),
              ("asof", ">i8"), ("l_plen", ">i4"), ("plen", ">i4"), ("l_tts", ">i4"),
              ("tts", _array(1, pred_len, ">i8")), ("l_p10", ">i4"), ("p10", band), ("l_p50", ">i4"), ("p50", band),
              ("l_p90", ">i4"), ("p90", band), ("l_samples", ">i4"), ("samples", _array(2, samples * pred_len, ">f4")),
              ("l_close", ">i4"), ("close", ">f8")]  # fmt: skip
    rows = np.zeros(n, dtype=np.dtype(fields))
    rows["count"] = 13
    as_of = (START - PG_EPOCH) // timedelta(microseconds=1) + hours * _US_PER_HOUR
    close = 100 * np.exp(rng.normal(0, 0.02, n))
    paths = close[:, None, None] * np.exp(np.cumsum(rng.normal(0, 0.01, (n, samples, pred_len)), axis=2))
    q = np.quantile(paths, [0.1, 0.5, 0.9], axis=1)  # (3, n, pred_len)
    scalars = (("id", ids, 8), ("sym", symbols, 5), ("tf", b"1h", 2), ("model", MODEL.encode(), len(MODEL)),
               ("asof", as_of, 8), ("plen", pred_len, 4), ("close", close, 8))  # fmt: skip
    for name, value, width in scalars:
        rows[f"l_{name}"], rows[name] = width, value
    rows["l_ver"] = 0
    steps = np.arange(pred_len)
    for name, oid, values, width in (
        ("tts", 1184, as_of[:, None] + steps * _US_PER_HOUR, 8), ("p10", 701, q[0], 8), ("p50", 701, q[1], 8),
        ("p90", 701, q[2], 8),
    ):  # fmt: skip
        rows[f"l_{name}"] = band.itemsize if name != "tts" else rows.dtype["tts"].itemsize
        _fill_array(rows[name], (pred_len,), oid, values, width)
    rows["l_samples"] = rows.dtype["samples"].itemsize
    _fill_array(rows["samples"], (samples, pred_len), 700, paths.astype(np.float32).reshape(n, -1), 4)
    return (
        COPY_SIGNATURE + np.array([0, 0], dtype=">i4").tobytes() + rows.tobytes() + np.int16(-1).astype(">i2").tobytes()
    )


def evaluation_stream(ids: np.ndarray, symbols: np.ndarray, hours: np.ndarray, pred_len: int) -> bytes:
    """Binary COPY rows of signal_evaluations, every step of every forecast."""
    n = len(ids) * pred_len
    rng = np.random.default_rng(int(ids[0]) + 1)
    step = np.tile(np.arange(1, pred_len + 1, dtype=np.int32), len(ids))
    as_of = np.repeat(np.datetime64(START.replace(tzinfo=None), "us") + hours * np.timedelta64(1, "h"), pred_len)
    crps = rng.gamma(2.0, 0.5, n)
    returns = rng.normal(0, 0.01, n)
    columns = [
        ("prediction_id", ">i8", np.repeat(ids, pred_len)), ("step", ">i4", step),
        ("symbol", "text", np.repeat(symbols, pred_len)), ("timeframe", "text", np.full(n, b"1h")),
        ("model_name", "text", np.full(n, MODEL.encode())), ("as_of", "timestamptz", as_of.astype("datetime64[us]")),
        ("target_ts", "timestamptz", (as_of + (step - 1) * np.timedelta64(1, "h")).astype("datetime64[us]")),
        ("last_close", ">f8", np.full(n, 100.0)), ("realised_close", ">f8", 100 * (1 + returns)),
        ("p10", ">f8", np.full(n, 98.0)), ("p50", ">f8", np.full(n, 100.0)), ("p90", ">f8", np.full(n, 102.0)),
        ("direction_hit", "?", rng.random(n) < 0.5), ("in_band", "?", rng.random(n) < 0.8),
        ("in_band_raw", "?", rng.random(n) < 0.75), ("crps", ">f8", crps), ("crps_rw", ">f8", crps * 1.01),
        ("pinball_10", ">f8", crps / 3), ("pinball_50", ">f8", crps / 2), ("pinball_90", ">f8", crps / 3),
        ("realised_return", ">f8", returns), ("strategy_return", ">f8", returns * np.sign(rng.normal(size=n))),
    ]  # fmt: skip
    # binary_copy takes timezone-aware timestamps
    aware = [(name, kind, pd.DatetimeIndex(v).tz_localize("UTC") if kind == "timestamptz" else v)
             for name, kind, v in columns]  # fmt: skip
    return binary_copy(aware)


_FORECAST_COLUMNS = (
    "id, symbol, timeframe, model_name, model_version, as_of, pred_len, target_ts, p10, p50, p90, samples, last_close"
)
_EVALUATION_COLUMNS = (
    "prediction_id, step, symbol, timeframe, model_name, as_of, target_ts, last_close, realised_close, p10, p50, p90, "
    "direction_hit, in_band, in_band_raw, crps, crps_rw, pinball_10, pinball_50, pinball_90, realised_return, "
    "strategy_return"
)


# The triggers a bulk load of settled history goes without: one NOTIFY per row and the scoring backlog. The
# forecast_heads trigger (the latest-forecast read) stays on.
_QUIET = ", ".join(
    f"{{0}} TRIGGER {name}"
    for name in ("trg_ml_predictions_notify", "trg_ml_predictions_backlog_insert", "trg_ml_predictions_backlog_update")
)


def load(engine: sa.Engine, first_hour: int, last_hour: int, names: np.ndarray, next_id: int, pred_len: int,
         samples: int, chunk: int = 100_000) -> int:  # fmt: skip
    """Forecasts (and all their scores) of hours [first_hour, last_hour) for every symbol; returns the next id."""
    hours_all = np.repeat(np.arange(first_hour, last_hour), len(names))
    symbols_all = np.tile(names, last_hour - first_hour)
    months = {month_of(START + int(h) * H) for h in range(first_hour, last_hour + pred_len, 24)}
    months.add(month_of(START + (last_hour - 1) * H))
    with engine.begin() as conn, cursor(conn) as cur:
        for table in ("ml_predictions", "signal_evaluations"):
            ensure_partitions(conn, table, months)
        cur.execute(f"ALTER TABLE ml_predictions {_QUIET.format('DISABLE')}")
        for lo in range(0, len(hours_all), chunk):
            hours, symbols = hours_all[lo : lo + chunk], symbols_all[lo : lo + chunk]
            ids = np.arange(next_id, next_id + len(hours), dtype=np.int64)
            next_id += len(hours)
            with cur.copy(f"COPY ml_predictions ({_FORECAST_COLUMNS}) FROM STDIN (FORMAT binary)") as copy:
                copy.write(forecast_stream(ids, symbols, hours, pred_len, samples))
            with cur.copy(f"COPY signal_evaluations ({_EVALUATION_COLUMNS}) FROM STDIN (FORMAT binary)") as copy:
                copy.write(evaluation_stream(ids, symbols, hours, pred_len))
        cur.execute(f"ALTER TABLE ml_predictions {_QUIET.format('ENABLE')}")
        cur.execute("SELECT setval('ml_predictions_id_seq', %s)", (next_id - 1,))
        cur.executemany(
            "INSERT INTO performance_changes (timeframe, symbol, model_name, min_as_of) VALUES ('1h', %s, %s, %s)",
            [(name.decode(), MODEL, START + first_hour * H) for name in names],
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE ml_predictions")
        conn.exec_driver_sql("VACUUM ANALYZE signal_evaluations")
    return next_id


def read_latency(engine: sa.Engine, names: np.ndarray, reads: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    times = []
    for symbol in rng.choice(names, reads):
        t = time.perf_counter()
        p = latest_prediction(engine, symbol.decode(), MODEL, "1h")
        times.append(time.perf_counter() - t)
        assert p is not None
    times.sort()
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3


def timed(fn, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--pred-len", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--server-url", default=LOCAL_SERVER_URL)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    names = np.array([f"S{i:04d}".encode() for i in range(args.symbols)], dtype="S5")
    print(f"{args.symbols} symbols, 1 model, hourly; {args.pred_len} steps, {args.samples} paths per forecast; "
          f"every step scored")  # fmt: skip
    print(f"{'forecasts':>10} {'scores':>10} {'months':>6} {'load s':>7} {'read p50 ms':>11} {'read p99 ms':>11} "
          f"{'full refresh s':>14} {'hourly refresh s':>16} {'one-series refresh s':>20}")  # fmt: skip
    with temporary_database(args.server_url, prefix="candlecast_bench") as url:
        engine = create_engine_for(url, pool_size=2)
        with engine.begin() as conn:
            upsert_instruments(conn, [Instrument(n.decode(), "crypto") for n in names])
        hours_loaded, next_id = 0, 1
        for size in sizes:
            hours = -(-size // args.symbols)
            t = time.perf_counter()
            next_id = load(engine, hours_loaded, hours, names, next_id, args.pred_len, args.samples)
            load_s = time.perf_counter() - t
            hours_loaded = hours
            p50, p99 = read_latency(engine, names, args.reads)
            full = timed(refresh_performance, engine, "1h", full=True)
            refresh_performance(engine, "1h")  # the state after the bulk load
            # one more hour: forecasts and their scores, as the hourly batch and scoring would add them
            next_id = load(engine, hours_loaded, hours_loaded + 1, names, next_id, args.pred_len, args.samples)
            hours_loaded += 1
            hourly = timed(refresh_performance, engine, "1h")
            # one more hour in which only one series gains a forecast and scores: the refresh rewrites only it
            next_id = load(engine, hours_loaded, hours_loaded + 1, names[:1], next_id, args.pred_len, args.samples)
            single = timed(refresh_performance, engine, "1h")
            next_id = load(engine, hours_loaded, hours_loaded + 1, names[1:], next_id, args.pred_len, args.samples)
            hours_loaded += 1
            with engine.connect() as conn:
                counts = conn.execute(sa.text(
                    "SELECT (SELECT count(*) FROM ml_predictions), (SELECT count(*) FROM signal_evaluations), "
                    "(SELECT count(*) FROM pg_inherits WHERE inhparent = 'ml_predictions'::regclass)"
                )).one()  # fmt: skip
            print(f"{counts[0]:>10,} {counts[1]:>10,} {counts[2] - 1:>6} {load_s:>7.1f} {p50:>11.2f} {p99:>11.2f} "
                  f"{full:>14.2f} {hourly:>16.2f} {single:>20.2f}", flush=True)  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()
