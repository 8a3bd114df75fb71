"""Path questions at the gateway: latency of ``GET /api/v1/probability`` on a cached forecast of 256 paths x 120
steps, over HTTP on 127.0.0.1.

    .venv/bin/python bench/path_questions.py [--requests 4000] [--database-url URL]

Uses a fresh database on the local server (127.0.0.1:5432) unless --database-url is given, stores one forecast
with 256 sample paths of 120 hourly steps (closes, highs and lows, so touches are judged on highs/lows), starts
the gateway (``candlecast.gateway.serve``: one uvicorn worker) in a child process, warms the cache with one
question, then asks ``--requests`` questions one after another on one keep-alive connection, cycling through touch
(a different level each time), close, first, drawdown and runup, and prints p50/p90/p99/max per question and
overall. The latency is the client's: request sent to answer read. Goal: p99 < 10 ms. It also times the answer
alone, in process (``questions.answer`` on the cached entry: what a request costs beyond HTTP and routing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd

from candlecast.gateway.cache import ResponseCache
from candlecast.gateway.params import parse_path_question
from candlecast.gateway.questions import answer
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database
from candlecast.store.predictions import Prediction, upsert_prediction

AS_OF = datetime(2024, 3, 1, 12, tzinfo=UTC)
PATHS, STEPS = 256, 120
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str) -> None:
    engine = create_engine_for(url)
    upgrade(engine)
    rng = np.random.default_rng(0)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (PATHS, STEPS)), axis=1))
    wick = np.abs(rng.normal(0, 0.003, (2, PATHS, STEPS)))
    forecast = Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name="baseline", as_of=AS_OF,
        target_ts=[AS_OF + timedelta(hours=h) for h in range(STEPS)],
        p10=np.quantile(closes, 0.1, 0), p50=np.quantile(closes, 0.5, 0), p90=np.quantile(closes, 0.9, 0),
        last_close=100.0, samples=closes, samples_high=closes * (1 + wick[0]), samples_low=closes * (1 - wick[1]),
        model_version="bench",
    )  # fmt: skip
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        ts = pd.date_range(AS_OF - timedelta(hours=100), periods=100, freq="h", tz="UTC")
        upsert_candles(conn, "BTCUSDT", "1h", pd.DataFrame({"ts": ts, "close": 100.0}))
        upsert_prediction(conn, forecast)
    engine.dispose()


def start_gateway(db_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CANDLECAST_DATABASE_URL": db_url,
        "CANDLECAST_GATEWAY__PORT": str(port),
        "CANDLECAST_GATEWAY__API_KEYS": json.dumps([KEY]),
        "CANDLECAST_GATEWAY__RATE_LIMIT_PER_MINUTE": "1000000",
        "CANDLECAST_LOG_LEVEL": "WARNING",
    }
    code = "from candlecast.config import Settings; from candlecast.gateway import serve; serve(Settings())"
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def questions(n: int) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    for i in range(n):
        kind = ("touch", "touch", "close", "first", "drawdown", "runup")[i % 6]
        params: dict[str, object] = {"symbol": "BTCUSDT", "question": kind}
        if kind in ("touch", "close"):
            params["level"] = round(90 + (i % 200) * 0.1, 2)  # 90 to 110: below and above the last close
        if kind == "first":
            params.update(level=95 + (i % 10) * 0.1, level_b=105 + (i % 10) * 0.1)
        if i % 3 == 0:
            params["steps"] = 24 + i % 96
        out.append((kind, params))
    return out


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return f"n={len(a):5d}  p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  max {a.max():6.2f} ms"


def run(args: argparse.Namespace, db_url: str) -> None:
    seed(db_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/probability"
    gateway = start_gateway(db_url, port)
    try:
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = client.get(url, params={"symbol": "BTCUSDT", "question": "touch", "level": 101})
                    break
                except httpx.TransportError:
                    if gateway.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the gateway did not come up") from None
                    time.sleep(0.2)
            first.raise_for_status()
            body = first.json()
            print(f"forecast: {body['paths']} paths x {body['horizon_steps']} steps, basis {body['basis']}")
            latencies: dict[str, list[float]] = {}
            for kind, params in questions(args.requests):
                started = time.perf_counter()
                response = client.get(url, params=params)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{params}: {response.status_code} {response.text}")
                latencies.setdefault(kind, []).append(elapsed)
    finally:
        gateway.terminate()
        gateway.wait(10)
    for kind, ms in latencies.items():
        print(f"{kind:9s} {percentiles(ms)}")
    print(f"{'all':9s} {percentiles([m for ms in latencies.values() for m in ms])}")
    in_process(db_url)


def in_process(db_url: str) -> None:
    """``questions.answer`` alone on the paths entry the gateway caches (built here by the same loader)."""
    from candlecast.config import Settings
    from candlecast.gateway.params import parse_paths
    from candlecast.gateway.payloads.paths import paths_payload

    settings = Settings(database_url=db_url)
    engine = create_engine_for(db_url)
    value = paths_payload(engine, parse_paths("BTCUSDT", None, "1h", None, "baseline"), settings.gateway)
    engine.dispose()
    cache = ResponseCache("private", "private")
    entry = cache.put(("paths",), 200, value, 60, None, cache.token(None))
    ms: list[float] = []
    for kind, params in questions(4000):
        asked = parse_path_question(
            kind,
            params.get("level"),
            params.get("level_b"),
            None,
            params.get("steps"),
            None,
            None,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        answer(entry, asked)
        ms.append((time.perf_counter() - started) * 1000)
    print(f"{'in-process answer':9s} {percentiles(ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--database-url", help="an empty database to use (default: a new one on 127.0.0.1:5432)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        db_url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_pathbench"))
        run(args, db_url)


if __name__ == "__main__":
    main()
