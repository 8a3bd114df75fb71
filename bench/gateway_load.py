"""Gateway load: cached showcase reads over HTTP, against a bare Starlette app serving the same JSON body.

    .venv/bin/python bench/gateway_load.py [--duration 10] [--rounds 2] [--processes 2] [--database-url URL]

Needs wrk (Debian: ``apt-get install -y wrk``, or ``scripts/install-system-deps.sh --bench``). Uses a fresh
database on the local server (127.0.0.1:5432) unless --database-url is given, seeds a few forecasts, then:

1. starts the gateway (``candlecast.gateway.serve``: one uvicorn worker) in a child process, and a bare
   Starlette app (one uvicorn worker, same event loop and HTTP parser) that returns the gateway's exact
   showcase body;
2. drives ``GET /showcase/ml-prediction/BTCUSDT`` with wrk (a separate process) at 16 and 64 connections,
   alternating bare and gateway for ``--rounds`` rounds, and prints the median req/s and p50/p99 latency;
3. measures insert-to-fresh-read latency: commit a new forecast, then poll the showcase until it serves it.

Goal: the gateway at >= 50% of the bare app's req/s, with p99 < 10 ms.

``--processes N`` starts N gateway processes on one port (``SO_REUSEPORT``: the kernel spreads connections, as
N replicas behind a balancer would be) and compares them with the same one bare worker; issue 14 asks for >= 1.8x
with 2 processes on 2 otherwise idle cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil

from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.db import temporary_database
from candlecast.store.predictions import Prediction, upsert_prediction

AS_OF = datetime(2024, 3, 1, 12, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SPY")
PATH = "/showcase/ml-prediction/BTCUSDT"

BARE_APP = """
import gc
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

body = open(sys.argv[2], "rb").read()


async def showcase(request):
    return Response(body, media_type="application/json")


app = Starlette(routes=[Route("/showcase/ml-prediction/{symbol}", showcase)])
gc.collect()
gc.freeze()  # as candlecast.gateway.serve does
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def forecast(symbol: str, as_of: datetime, seed: int) -> Prediction:
    rng = np.random.default_rng(seed)
    samples = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (32, 24)), axis=1))
    return Prediction(
        symbol=symbol, timeframe="1h", model_name="baseline", as_of=as_of,
        target_ts=[as_of + timedelta(hours=h + 1) for h in range(24)],
        p10=np.quantile(samples, 0.1, 0), p50=np.quantile(samples, 0.5, 0), p90=np.quantile(samples, 0.9, 0),
        last_close=100.0, samples=samples, model_version="bench",
    )  # fmt: skip


def seed(url: str) -> None:
    engine = create_engine_for(url)
    upgrade(engine)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, "crypto") for s in SYMBOLS])
        ts = pd.date_range(AS_OF - timedelta(hours=100), periods=100, freq="h", tz="UTC")
        for symbol in SYMBOLS:
            upsert_candles(conn, symbol, "1h", pd.DataFrame({"ts": ts, "close": 100.0}))
            upsert_prediction(conn, forecast(symbol, AS_OF, seed=1))
    engine.dispose()


def wait_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


SERVE_REUSEPORT = """
import gc, socket, uvicorn
from candlecast.config import Settings
from candlecast.gateway import create_app
from candlecast.gateway.app import server_config
settings = Settings()
app = create_app(settings)
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", settings.gateway.port))
gc.collect()
gc.freeze()
uvicorn.Server(server_config(app, settings)).run(sockets=[sock])
"""


def start_gateway(db_url: str, port: int, reuse_port: bool = False) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CANDLECAST_DATABASE_URL": db_url,
        "CANDLECAST_GATEWAY__PORT": str(port),
        "CANDLECAST_LOG_LEVEL": "WARNING",
    }
    code = "from candlecast.config import Settings; from candlecast.gateway import serve; serve(Settings())"
    return subprocess.Popen([sys.executable, "-c", SERVE_REUSEPORT if reuse_port else code], env=env)


def cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds the server processes have used so far."""
    return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in processes)


def wrk(url: str, connections: int, duration: int, servers: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """One wrk run: req/s, p50/p99 latency, and the servers' CPU microseconds per request (a cost that the other
    load on the machine changes far less than req/s)."""
    cpu_before = cpu_seconds(servers)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match is not None, out
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    assert rps is not None and total is not None, out
    cpu_us = (cpu_seconds(servers) - cpu_before) * 1e6 / int(total.group(1))
    return {"rps": float(rps.group(1)), "p50_ms": ms("50"), "p99_ms": ms("99"), "cpu_us": cpu_us}


def fresh_read_latency(db_url: str, gateway_url: str, samples: int) -> list[float]:
    """Seconds from a forecast's commit to the first showcase answer that carries it."""
    engine = create_engine_for(db_url)
    latencies = []
    with httpx.Client(base_url=gateway_url) as client:
        for i in range(samples):
            as_of = AS_OF + timedelta(hours=i + 1)
            client.get(PATH)  # make sure the previous forecast is cached
            with engine.begin() as conn:
                upsert_prediction(conn, forecast("BTCUSDT", as_of, seed=100 + i))
            committed = time.perf_counter()
            wanted = as_of.isoformat().replace("+00:00", "Z")
            while client.get(PATH).json()["as_of"] != wanted:
                if time.perf_counter() - committed > 5:
                    raise SystemExit("a new forecast was not served within 5 s")
            latencies.append(time.perf_counter() - committed)
    engine.dispose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/gateway runs per connection count")
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--fresh-samples", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1, help="gateway processes sharing the port")
    parser.add_argument("--database-url", help="an empty database to use (default: a new one on 127.0.0.1:5432)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    with contextlib.ExitStack() as stack:
        db_url = args.database_url or stack.enter_context(temporary_database(prefix="candlecast_gwbench"))
        run(args, db_url)


def run(args: argparse.Namespace, db_url: str) -> None:
    seed(db_url)

    gateway_port, bare_port = free_port(), free_port()
    gateways = [start_gateway(db_url, gateway_port, args.processes > 1) for _ in range(args.processes)]
    bare = None
    try:
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        for gateway in gateways:
            wait_up(gateway_url + PATH, gateway)
        body = httpx.get(gateway_url + PATH).content
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            f.write(body)
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), f.name])
        bare_url = f"http://127.0.0.1:{bare_port}"
        wait_up(bare_url + PATH, bare)
        print(f"body: {len(body)} bytes; wrk -t2, {args.duration} s per run, median of {args.rounds} rounds; "
              f"{args.processes} gateway process(es) against one bare worker")  # fmt: skip
        print(f"{'app':<10}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'cpu us':>9}")
        summary = {}
        for connections in args.connections:
            runs: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
            for _ in range(args.rounds):
                for app, url, servers in (("bare", bare_url, [bare]), ("gateway", gateway_url, gateways)):
                    run = wrk(url + PATH, connections, args.duration, servers)
                    runs[app].append(run)
                    print(f"  {app:<8}{connections:>6}{run['rps']:>10.0f}{run['p50_ms']:>9.2f}{run['p99_ms']:>9.2f}"
                          f"{run['cpu_us']:>9.1f}")  # fmt: skip
            print(f"median of {args.rounds} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
            for app, results in runs.items():
                med = {k: statistics.median(r[k] for r in results) for k in results[0]}
                summary[(app, connections)] = med
                print(f"{app:<10}{connections:>6}{med['rps']:>10.0f}{med['p50_ms']:>9.2f}{med['p99_ms']:>9.2f}"
                      f"{med['cpu_us']:>9.1f}")  # fmt: skip
            bare_m, gw_m = summary[("bare", connections)], summary[("gateway", connections)]
            print(f"{'':<10}{connections:>6}  {args.processes} gateway process(es) / one bare worker, req/s measured: "
                  f"{gw_m['rps'] / bare_m['rps']:.2f}x")  # fmt: skip
            # What N processes would serve on N cores of their own, from the CPU each request cost them here (the
            # load generator and the machine's other work share these cores; see docs/gateway.md), against the bare
            # worker: its measured req/s, and one core's worth at its own CPU cost.
            projected = args.processes * 1e6 / gw_m["cpu_us"]
            print(f"{'':<10}{connections:>6}  from CPU per request ({gw_m['cpu_us']:.1f} us gateway, "
                  f"{bare_m['cpu_us']:.1f} us bare): {args.processes} dedicated cores would serve {projected:.0f} "
                  f"req/s = {projected / bare_m['rps']:.2f}x the bare worker's measured req/s, "
                  f"{projected * bare_m['cpu_us'] / 1e6:.2f}x one core of bare worker")  # fmt: skip

        metrics = httpx.get(gateway_url + "/metrics").text
        hits = re.search(r'candlecast_gateway_cache_total\{result="hit"\} ([\d.e+]+)', metrics)
        misses = re.search(r'candlecast_gateway_cache_total\{result="miss"\} ([\d.e+]+)', metrics)
        print(f"gateway cache: {float(hits.group(1)):.0f} hits, {float(misses.group(1)):.0f} misses" if hits and misses
              else "gateway cache: counters not found")  # fmt: skip

        latencies = np.array(fresh_read_latency(db_url, gateway_url, args.fresh_samples)) * 1000
        print(
            f"insert -> fresh read ({len(latencies)} forecasts): p50 {np.percentile(latencies, 50):.2f} ms, "
            f"p95 {np.percentile(latencies, 95):.2f} ms, max {latencies.max():.2f} ms"
        )
        Path(f.name).unlink()
    finally:
        for process in (*gateways, bare):
            if process is not None:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
