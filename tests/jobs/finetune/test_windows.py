"""Training windows of a fine-tune run: cut from every series, split by time, read from the store as of a time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.events import channels as ch
from candlecast.jobs.finetune.run import FinetuneData
from candlecast.jobs.finetune.windows import build_windows, split_by_time
from candlecast.models.finetune.data import CandleSeries

from .conftest import AS_OF


def synthetic_series(n: int, symbol: str = "X") -> CandleSeries:
    timestamps = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    values = np.abs(np.random.default_rng(n).normal(100, 5, (n, 6))).astype(np.float32)
    events = np.zeros((n, 20), dtype=np.float32)
    events[:, ch.DAYS_TO_FOMC_SIN] = 0.5
    return CandleSeries(symbol, "1h", timestamps, values, np.zeros((n, 5), dtype=np.float32), events)


def test_windows_split_by_time_never_share_a_candle_and_the_newest_ends_on_the_last_candle() -> None:
    series = [synthetic_series(500), synthetic_series(300, symbol="Y")]
    windows = build_windows(series, lookback=32, horizon=8, stride=8)
    _, last = windows.bounds_ns()
    assert last.max() == series[0].timestamps.asi8[-1]
    train_windows, validation, cutoff = split_by_time(windows, 0.25)
    train_first, train_last = train_windows.bounds_ns()
    val_first, _ = validation.bounds_ns()
    assert train_last.max() < cutoff.value <= val_first.min()
    assert len(train_windows) > 2 * len(validation) > 0
    assert len(train_windows) + len(validation) <= len(windows)  # windows straddling the cutoff are dropped


def test_the_windows_of_a_run_are_read_as_of_its_time_and_split_before_it(data: FinetuneData) -> None:
    assert [f"{s.symbol} {s.timeframe}" for s in data.series] == ["BTCUSDT 1h"]
    newest = data.series[0].timestamps[-1]
    assert newest + pd.Timedelta(hours=1) <= AS_OF  # only candles closed by the as-of time
    assert data.cutoff < newest
    _, train_last = data.train.windows.bounds_ns()
    val_first, _ = data.validation.windows.bounds_ns()
    assert train_last.max() < data.cutoff.value <= val_first.min()
    assert len(data.train) >= 100 and data.train.has_events.any()  # the real calendar marks some windows
