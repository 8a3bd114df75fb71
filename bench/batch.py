"""Batch job wall time: the 23 default instruments, hourly, with the baseline model.

    .venv/bin/python bench/batch.py [--runs 3] [--database-url URL] [--engine plain|ray] [--replicas N]

A fresh database on the local server (127.0.0.1:5432) unless --database-url is given, holding 600 synthetic
hourly candles (random walks) per instrument up to the slot. Runs the batch with the default job settings
(context 512, 24 steps, 32 samples, 8 series per request, 2 requests at a time) through a real inference
service started on a free port (HTTP), then in-process (``--local``); each mode ``--runs`` times, rewriting
the same slot. Prints seconds per run and the share of time spent waiting on the model.

``--engine ray --replicas N`` starts the service on Ray Serve (``candlecast serve-inference --engine ray``, extra
``ray``) with N replicas of one CPU each, instead of the plain single-process server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd

from candlecast.config import DEFAULT_UNIVERSE, Settings
from candlecast.jobs.batch import run_batch
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database

SLOT = datetime(2024, 3, 6, 12, tzinfo=UTC)  # a Wednesday: every market is open
CANDLES = 600


def load(engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    ts = pd.date_range(SLOT - timedelta(hours=CANDLES), periods=CANDLES, freq="h", tz="UTC")
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, c) for s, c in DEFAULT_UNIVERSE.items()])
        for symbol in DEFAULT_UNIVERSE:
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, CANDLES)))
            open_ = np.r_[100.0, close[:-1]]
            high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
            volume = rng.uniform(10, 100, CANDLES)
            frame = pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close,
                                  "volume": volume, "amount": volume * close})  # fmt: skip
            upsert_candles(conn, symbol, "1h", frame)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url")
    parser.add_argument("--engine", choices=("plain", "ray"), default="plain", help="inference engine")
    parser.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (--engine ray)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_bench"))
        run(args.runs, url, args.engine, args.replicas)


def run(runs: int, url: str, serving: str = "plain", replicas: int = 2) -> None:
    engine = create_engine_for(url)
    process = None
    try:
        upgrade(engine)
        load(engine)
        process, service_url = start_service(serving, replicas)
        settings = Settings(models="baseline", inference={"url": service_url})
        cfg = settings.jobs
        print(f"{len(DEFAULT_UNIVERSE)} instruments, context {cfg.context_1h}, {cfg.pred_len_1h} steps, "
              f"{cfg.sample_count} samples, {cfg.request_series_per_call} series/request, "
              f"concurrency {cfg.concurrency}")  # fmt: skip
        served = f"HTTP ({serving}" + (f", {replicas} replicas)" if serving == "ray" else ")")
        for label, local in ((served, False), ("in-process (--local)", True)):
            for attempt in range(runs):
                started = time.perf_counter()
                result = run_batch(settings, engine, "1h", "baseline", as_of=SLOT, local=local, progress=False)
                seconds = time.perf_counter() - started
                print(f"{label:<26} run {attempt + 1}: {seconds:5.2f} s, {len(result.ok)} written, "
                      f"{len(result.failed)} failed ({len(result.ok) / seconds:.1f} symbols/s)")  # fmt: skip
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
