"""Load test of the inference service with Kronos-small-sized random weights on CPU.

Starts ``candlecast.inference.serve`` in a subprocess with a randomly initialised model of the published
Kronos-small shape (24.7M parameters, Kronos-Tokenizer-base shape), then measures over HTTP:

1. series/s with 1 client sending one-series requests back to back, with 8 concurrent clients
   (micro-batching merges their requests into shared model calls), and with 1 client sending 8 series per
   request (how the batch jobs call it: one model call of 8);
2. p50/p99 latency of a single-series request (from the 1-client phase);
3. a soak of N sequential requests (default 1,000, smaller requests so it finishes in minutes): latency
   of the first and last 100 and the server's resident memory at the start and the end.

    .venv/bin/python bench/inference_load.py [--requests 40] [--soak 1000] [--context 256] [--pred-len 24]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil

from candlecast.config import Settings
from candlecast.models.kronos import save_random_checkpoints

PUBLISHED = Path(__file__).resolve().parents[1] / "tests/fixtures/kronos-reference/published-checkpoints.json"
MODEL = "kronos-small-random"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    volume = rng.uniform(10, 100, n)
    rows = np.column_stack([open_, high, low, close, volume, volume * close]).round(6).tolist()
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return {"timestamps": [t.isoformat() for t in ts], "ohlcv": rows}


def start_server(folder: Path, port: int, window_ms: float | None) -> subprocess.Popen[bytes]:
    config = json.loads(PUBLISHED.read_text())
    model_dir, tokenizer_dir = save_random_checkpoints(
        folder,
        model_config=config["NeoQuasar/Kronos-small"]["config"],
        tokenizer_config=config["NeoQuasar/Kronos-Tokenizer-base"]["config"],
    )
    spec = {"name": MODEL, "kind": "kronos", "model_source": str(model_dir), "tokenizer_source": str(tokenizer_dir)}
    env = {
        **os.environ,
        "CANDLECAST_MODELS": MODEL,
        "CANDLECAST_MODEL_SOURCES": json.dumps({MODEL: spec}),
        "CANDLECAST_INFERENCE__PORT": str(port),
        "CANDLECAST_LOG_LEVEL": "WARNING",
    }
    if window_ms is not None:
        env["CANDLECAST_INFERENCE__BATCH_WINDOW_MS"] = str(window_ms)
    code = "from candlecast.inference.app import serve; serve()"
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            health = httpx.get(f"{url}/health", timeout=2).json()
            if health["models"][MODEL]["status"] == "loaded":
                return
            raise SystemExit(f"model did not load: {health}")
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("the server did not become healthy")


def request_body(n: int, pred_len: int, samples: int, seed: int, series: int = 1) -> dict[str, Any]:
    return {
        "model": MODEL,
        "series": [payload(n, seed * 100 + i) for i in range(series)],
        "pred_len": pred_len,
        "sample_count": samples,
        "seed": seed,
    }


def timed_post(client: httpx.Client, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post("/v1/forecast", json=body)
    response.raise_for_status()
    return time.perf_counter() - started


def run_clients(url: str, clients: int, per_client: int, body_of: Any) -> tuple[float, list[float]]:
    """Wall time and per-request latencies of ``clients`` threads each sending ``per_client`` requests."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def work(c: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            barrier.wait()
            for i in range(per_client):
                seconds = timed_post(client, body_of(c * 1000 + i))
                with lock:
                    latencies.append(seconds)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="requests in the 1-client phase")
    parser.add_argument("--per-client", type=int, default=6, help="requests per client in the 8-client phase")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--pred-len", type=int, default=24)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--soak", type=int, default=1000, help="sequential requests of the soak")
    parser.add_argument("--soak-context", type=int, default=64)
    parser.add_argument("--soak-pred-len", type=int, default=4)
    parser.add_argument("--soak-samples", type=int, default=4)
    parser.add_argument("--window-ms", type=float, default=None, help="micro-batching window (default: settings)")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        proc = start_server(Path(folder), port, args.window_ms)
        try:
            wait_healthy(url, proc)
            server = psutil.Process(proc.pid)
            info = httpx.get(f"{url}/models").json()["models"][0]
            window = args.window_ms if args.window_ms is not None else Settings().inference.batch_window_ms
            print(f"model: {MODEL}, {info['parameters']:,} parameters, context {info['context_length']}, CPU, "
                  f"{psutil.cpu_count()} cores; batch window {window:g} ms")  # fmt: skip

            def body(seed: int) -> dict[str, Any]:
                return request_body(args.context, args.pred_len, args.samples, seed)

            def many(seed: int) -> dict[str, Any]:
                return request_body(args.context, args.pred_len, args.samples, seed, series=8)

            print(f"request: 1 series, context {args.context}, pred_len {args.pred_len}, {args.samples} samples")
            run_clients(url, 1, 3, body)  # warm-up
            wall1, lat1 = run_clients(url, 1, args.requests, body)
            wall8, lat8 = run_clients(url, 8, args.per_client, body)
            print(f"1 client:  {args.requests / wall1:6.2f} series/s ({args.requests} requests in {wall1:.1f} s)")
            print(f"8 clients: {8 * args.per_client / wall8:6.2f} series/s ({8 * args.per_client} requests in "
                  f"{wall8:.1f} s; latency p50 {pct(lat8, 50):.0f} ms, p99 {pct(lat8, 99):.0f} ms)")  # fmt: skip
            print(f"single-series latency (1 client): p50 {pct(lat1, 50):.0f} ms, p99 {pct(lat1, 99):.0f} ms")
            wall_many, _ = run_clients(url, 1, args.per_client, many)
            print(f"1 client, 8 series per request: {8 * args.per_client / wall_many:6.2f} series/s "
                  f"({args.per_client} requests in {wall_many:.1f} s)")  # fmt: skip
            metrics = httpx.get(f"{url}/metrics").text
            batches = [line for line in metrics.splitlines() if line.startswith("candlecast_inference_batch_series_")]
            print("batch sizes: " + ", ".join(b.replace("candlecast_inference_batch_series_", "") for b in batches
                                              if "_count" in b or "_sum" in b))  # fmt: skip

            if args.soak < 1:
                return

            def soak_body(seed: int) -> dict[str, Any]:
                return request_body(args.soak_context, args.soak_pred_len, args.soak_samples, seed % 50)

            print(f"\nsoak: {args.soak} sequential requests (context {args.soak_context}, pred_len "
                  f"{args.soak_pred_len}, {args.soak_samples} samples)")  # fmt: skip
            latencies: list[float] = []
            rss = [server.memory_info().rss]
            with httpx.Client(base_url=url, timeout=600) as client:
                for i in range(args.soak):
                    latencies.append(timed_post(client, soak_body(i)))
                    if (i + 1) % max(1, args.soak // 10) == 0:
                        rss.append(server.memory_info().rss)
            first, last = latencies[:100], latencies[-100:]
            mib = [r / 2**20 for r in rss]
            print(f"latency first 100: p50 {pct(first, 50):.0f} ms, p99 {pct(first, 99):.0f} ms")
            print(f"latency last 100:  p50 {pct(last, 50):.0f} ms, p99 {pct(last, 99):.0f} ms; "
                  f"max over all {max(latencies) * 1000:.0f} ms")  # fmt: skip
            print(f"server RSS: start {mib[0]:.0f} MiB, end {mib[-1]:.0f} MiB; every {args.soak // 10} requests: "
                  + " ".join(f"{m:.0f}" for m in mib))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
