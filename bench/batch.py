"""Batch job throughput at scale: thousands of synthetic instruments built from real hourly shapes, baseline model.

    .venv/bin/python bench/batch.py [--symbols 2000] [--runs 1] [--database-url URL] [--engine plain|ray] [--replicas N]

A fresh database on the local server (127.0.0.1:5432) unless --database-url is given. Each instrument is a
scaled, time-shifted copy of a real hourly series of ``data/sample`` (BTCUSDT, EURUSD): a window of 600
consecutive candles taken at a random offset, its prices multiplied by a random factor (levels from 0.1 to
1,000), re-stamped on the hourly grid so it ends at the slot (24/7, so none is stale). The batch runs with the
default job settings (context 512, 120 steps, 32 samples, 8 series per request, 2 requests at a time, 256
instruments per read, up to 256 forecasts per write) through a real inference service started on a free port
(HTTP), then in-process (``--local``); each mode ``--runs`` times, rewriting the same slot.

Prints, per run: symbols/s end to end, and the busy time of each part as a share of the run's wall time:
the store (reading candles; writing forecasts, on the writer thread), the wire (time with a request in flight
minus the model's time: JSON, HTTP, queueing) and the model (the service's own ``model_call_seconds`` from
``/metrics``; in-process, the time with a request in flight). The parts overlap (reads and writes run while
requests are in flight), so the shares do not add up to 100%. The reader's and the writer's own CPU time is
printed too: the rest of their busy time is waiting on the database or on the other threads (the GIL).

``--engine ray --replicas N`` starts the service on Ray Serve (``candlecast serve-inference --engine ray``, extra
``ray``) with N replicas of one CPU each, instead of the plain single-process server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from candlecast.config import Settings
from candlecast.jobs.batch import BatchResult, run_batch
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database

SLOT = datetime(2024, 3, 6, 12, tzinfo=UTC)  # a Wednesday
CANDLES = 600
SHAPES = ("BTCUSDT_1h", "EURUSD_1h")  # real hourly series of data/sample/candles
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "candles"


def load(engine, symbols: int) -> None:  # type: ignore[no-untyped-def]
    """``symbols`` synthetic instruments (SYN0000...), each a scaled, shifted copy of a window of a real series."""
    rng = np.random.default_rng(0)
    shapes = [pd.read_parquet(SAMPLE / f"{name}.parquet") for name in SHAPES]
    ts = pd.date_range(SLOT - timedelta(hours=CANDLES), periods=CANDLES, freq="h", tz="UTC")
    names = [f"SYN{i:04d}" for i in range(symbols)]
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(name, "crypto") for name in names])
    for i, name in enumerate(names):
        shape = shapes[i % len(shapes)]
        start = int(rng.integers(0, len(shape) - CANDLES))
        window = shape.iloc[start : start + CANDLES].reset_index(drop=True)
        scale = 10 ** rng.uniform(-1, 3) / float(window["close"].iloc[0])
        frame = pd.DataFrame({"ts": ts, **{c: window[c] * scale for c in ("open", "high", "low", "close")},
                              "volume": window["volume"], "amount": window["amount"]})  # fmt: skip
        with engine.begin() as conn:
            upsert_candles(conn, name, "1h", frame)


def start_service(engine: str = "plain", replicas: int = 1) -> tuple[subprocess.Popen, str]:
    """The inference service in a subprocess: the plain server, or Ray Serve with ``replicas`` replicas."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CANDLECAST_MODELS": "baseline", "CANDLECAST_INFERENCE__PORT": str(port),
           "CANDLECAST_LOG_LEVEL": "WARNING"}  # fmt: skip
    command = [sys.executable, "-m", "candlecast.cli", "serve-inference", "--engine", engine]
    process = subprocess.Popen(command + (["--replicas", str(replicas)] if engine == "ray" else []), env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1800):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()  # Ray Serve shuts its cluster down on SIGTERM
    raise RuntimeError("the inference service did not start")


def model_seconds(url: str) -> float | None:
    """The service's model time so far (``candlecast_inference_model_call_seconds_sum``), or None if absent."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    if "candlecast_inference_model_call_seconds" not in text:  # a server without this metric
        return None
    found = re.findall(r'^candlecast_inference_model_call_seconds_sum\{model="baseline"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0  # no model call yet


def report(label: str, attempt: int, result: BatchResult, seconds: float, model_s: float | None) -> None:
    t = result.timings
    wire = None if model_s is None else max(0.0, t["requests_s"] - model_s)

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:6.1f} s ({100 * value / seconds:3.0f}%)"

    print(f"{label:<26} run {attempt + 1}: {seconds:6.1f} s, {len(result.ok) / seconds:6.1f} symbols/s "
          f"({len(result.ok)} written, {len(result.failed)} failed, {len(result.skipped)} skipped)")  # fmt: skip
    print(f"{'':<26}   store read {share(t['store_read_s'])}, store write {share(t['store_write_s'])}, "
          f"wire {share(wire)}, model {share(model_s)}")  # fmt: skip
    print(f"{'':<26}   (CPU of this process: reading {t['store_read_cpu_s']:.1f} s, "
          f"writing {t['store_write_cpu_s']:.1f} s; the rest of their time is waiting)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--database-url")
    parser.add_argument("--engine", choices=("plain", "ray"), default="plain", help="inference engine")
    parser.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (--engine ray)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_bench"))
        run(args.runs, url, args.symbols, args.engine, args.replicas)


def run(runs: int, url: str, symbols: int = 2000, serving: str = "plain", replicas: int = 2) -> None:
    engine = create_engine_for(url)
    process = None
    try:
        upgrade(engine)
        started = time.perf_counter()
        load(engine, symbols)
        print(f"loaded {symbols} instruments x {CANDLES} hourly candles in {time.perf_counter() - started:.1f} s")
        process, service_url = start_service(serving, replicas)
        settings = Settings(models="baseline", inference={"url": service_url})
        cfg = settings.jobs
        print(f"{symbols} instruments, context {cfg.context_1h}, {cfg.pred_len_1h} steps, "
              f"{cfg.sample_count} samples, {cfg.request_series_per_call} series/request, "
              f"concurrency {cfg.concurrency}, {cfg.read_chunk_symbols} per read, "
              f"up to {cfg.write_batch_rows} per write")  # fmt: skip
        served = f"HTTP ({serving}" + (f", {replicas} replicas)" if serving == "ray" else ")")
        for label, local in ((served, False), ("in-process (--local)", True)):
            for attempt in range(runs):
                # Ray Serve's /metrics is the answering replica's own: no total model time
                model_before = None if local or serving == "ray" else model_seconds(service_url)
                started = time.perf_counter()
                result = run_batch(settings, engine, "1h", "baseline", as_of=SLOT, local=local, progress=False)
                seconds = time.perf_counter() - started
                if local:
                    model_s: float | None = result.timings["requests_s"]
                else:
                    model_after = None if model_before is None else model_seconds(service_url)
                    model_s = None if model_before is None or model_after is None else model_after - model_before
                report(label, attempt, result, seconds, model_s)
    finally:
        if process is not None:
            process.terminate()  # Ray Serve shuts its cluster down on SIGTERM
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        engine.dispose()


if __name__ == "__main__":
    main()
