"""Fixtures of the model tests: candle series (plausible random walks; nothing read from outside the repo)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from candlecast.models.base import SeriesInput


def random_walk_ohlcv(n: int, seed: int = 0, sigma: float = 0.01, start: float = 100.0) -> np.ndarray:
    """(n, 6) consistent candles around a log-normal random walk of the close."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0, sigma, n)))
    open_ = np.r_[start, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, sigma / 2, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, sigma / 2, n))
    volume = rng.uniform(10, 100, n)
    return np.column_stack([open_, high, low, close, volume, volume * close])


def make_series(
    n: int = 64, seed: int = 0, symbol: str = "X", timeframe: str = "1h", calendar: str = "24/7", sigma: float = 0.01
) -> SeriesInput:
    freq = {"1h": "h", "1d": "D"}[timeframe]
    return SeriesInput(
        timestamps=pd.date_range("2024-03-04", periods=n, freq=freq, tz="UTC"),
        ohlcv=random_walk_ohlcv(n, seed, sigma),
        symbol=symbol,
        timeframe=timeframe,
        calendar=calendar,
    )


@pytest.fixture
def series() -> Callable[..., SeriesInput]:
    """A factory of random-walk SeriesInput: ``series(n=64, seed=0, symbol="X", timeframe="1h", ...)``."""
    return make_series


@pytest.fixture
def walk() -> Callable[..., np.ndarray]:
    """A factory of (n, 6) random-walk candles: ``walk(n, seed=0, sigma=0.01)``."""
    return random_walk_ohlcv


@pytest.fixture(scope="session")
def tiny_kronos(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(model folder, tokenizer folder) of a tiny randomly initialised Kronos written by the test run."""
    from candlecast.models.kronos import save_random_checkpoints

    model, tokenizer = save_random_checkpoints(tmp_path_factory.mktemp("kronos-tiny"), seed=0)
    return str(model), str(tokenizer)
