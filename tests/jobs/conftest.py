"""Fixtures of the job tests: synthetic candles in the store, and a real inference service in a subprocess
(so a test can kill it with SIGKILL mid-batch)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from candlecast.config import DEFAULT_UNIVERSE, Settings
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def random_walk(n: int, seed: int, start: datetime, freq: str = "h", level: float = 100.0) -> pd.DataFrame:
    """``n`` consistent OHLCV candles stamped on the grid from ``start``."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[level, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
    volume = rng.uniform(10, 100, n)
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq=freq, tz="UTC"), "open": open_, "high": high, "low": low,
        "close": close, "volume": volume, "amount": volume * close,
    })  # fmt: skip


def load_market(
    engine: Engine, symbols: Sequence[str], start: datetime, hours: int, timeframe: str = "1h"
) -> dict[str, pd.DataFrame]:
    """Instruments (asset classes from the default universe) with ``hours`` candles each from ``start``."""
    frames = {}
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(s, DEFAULT_UNIVERSE.get(s, "crypto")) for s in symbols])
        for i, symbol in enumerate(symbols):
            freq = "h" if timeframe == "1h" else "D"
            frames[symbol] = random_walk(hours, seed=i, start=start, freq=freq, level=50.0 + 10 * i)
            upsert_candles(conn, symbol, timeframe, frames[symbol])
    return frames


class InferenceProcess:
    """``candlecast.inference`` served by uvicorn in a child process on a free port."""

    def __init__(self, models: str = "baseline", **settings: str) -> None:
        """``settings``: more environment variables, e.g. ``CANDLECAST_INFERENCE__MAX_CONTEXT_CANDLES="32"``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "CANDLECAST_MODELS": models,
            "CANDLECAST_INFERENCE__PORT": str(self.port),
            "CANDLECAST_LOG_LEVEL": "WARNING",
            **settings,
        }
        code = "from candlecast.inference.app import serve; serve()"
        self.process = subprocess.Popen([sys.executable, "-c", code], env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("the inference service did not start")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight requests are cut."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def inference() -> Iterator[InferenceProcess]:
    server = InferenceProcess()
    try:
        yield server
    finally:
        server.kill()


def job_settings(url: str = "http://127.0.0.1:9", **jobs: object) -> Settings:
    """Settings for job tests: small windows and horizons, quick retries, the given inference URL."""
    base = {
        "pred_len_1h": 4, "pred_len_1d": 3, "context_1h": 64, "context_1d": 64, "sample_count": 16,
        "request_series_per_call": 2, "concurrency": 2, "http_timeout_s": 10, "http_retries": 1,
        "http_backoff_s": 0.05, "min_context_1h": 16, "min_context_1d": 16,
    }  # fmt: skip
    base.update(jobs)
    return Settings(models="baseline", inference={"url": url}, jobs=base)
