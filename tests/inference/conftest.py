"""Fixtures of the inference tests: a real uvicorn server on a free port, and candle payloads."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL; stops it on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def candle_payload(n: int = 64, seed: int = 0, start: str = "2024-03-04 00:00", freq: str = "h") -> dict[str, Any]:
    """A plausible random-walk candle series as JSON: timestamps and [o, h, l, c, v, a] rows."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(10, 100, n)
    rows = np.column_stack([open_, high, low, close, volume, volume * close]).round(6).tolist()
    timestamps = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    return {"timestamps": [t.isoformat() for t in timestamps], "ohlcv": rows}


@pytest.fixture(scope="session")
def make_payload() -> Callable[..., dict[str, Any]]:
    return candle_payload


@pytest.fixture(scope="session")
def tiny_kronos_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(model folder, tokenizer folder) of a tiny randomly initialised Kronos written by the test run."""
    from candlecast.models.kronos import save_random_checkpoints

    model, tokenizer = save_random_checkpoints(tmp_path_factory.mktemp("kronos-tiny"), seed=0)
    return str(model), str(tokenizer)


def service_settings(tiny_kronos_dir: tuple[str, str], models: str, **inference: Any) -> Any:
    """Settings for a test server: the baseline, a tiny Kronos, a Kronos whose folder does not exist."""
    from candlecast.config import InferenceSettings, ModelSpec, Settings

    model, tokenizer = tiny_kronos_dir
    sources = {
        "kronos-tiny": ModelSpec(
            name="kronos-tiny", kind="kronos", model_source=model, tokenizer_source=tokenizer, max_context=64
        ),
        "kronos-broken": ModelSpec(
            name="kronos-broken",
            kind="kronos",
            model_source="/nonexistent/kronos-model",
            tokenizer_source="/nonexistent/kronos-tokenizer",
        ),
    }
    return Settings(models=models, model_sources=sources, inference=InferenceSettings(**inference))


@pytest.fixture(scope="session")
def serve_app() -> Callable[[FastAPI], Any]:
    """``with serve_app(app) as url:`` runs the app on a real uvicorn server on a free port."""
    return running


@pytest.fixture(scope="session")
def settings_for(tiny_kronos_dir: tuple[str, str]) -> Callable[..., Any]:
    """``settings_for("baseline,kronos-tiny", token="t", ...)``: Settings for a test server."""

    def build(models: str, **inference: Any) -> Any:
        return service_settings(tiny_kronos_dir, models, **inference)

    return build


def prometheus_value(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in ``text`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="session")
def metric() -> Callable[..., float]:
    """``metric(text, name, **labels)``: one sample of a /metrics page."""
    return prometheus_value
