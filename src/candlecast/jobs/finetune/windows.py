"""Training windows of a fine-tune run: an asset class's candles and event tensors read from the store as of
a time, cut into fixed-length windows and split by time.

Windows (``candlecast.models.finetune.data``) are ``lookback + horizon`` consecutive candles of one (symbol,
timeframe) series, normalised with their lookback only. They start every ``window_stride`` candles, aligned
so the newest ends on the newest candle closed by the as-of time.

Split by time: windows that end before the cutoff train, windows that start at or after it validate, and
the few that straddle it are dropped, so no validation candle is ever seen in training. The cutoff is the
time before which ``1 - validation_fraction`` of the windows end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.config import FinetuneSettings, Settings
from candlecast.errors import NotEnoughDataError
from candlecast.jobs.events import EventInputs
from candlecast.models.base import OHLCV_COLUMNS, SeriesInput
from candlecast.models.finetune.data import CandleSeries, Windows
from candlecast.models.kronos import _time_features
from candlecast.models.kronos_forecaster import kronos_frame
from candlecast.store.candles import get_instruments, latest_candles_many

__all__ = ["build_windows", "read_series", "settings_window_check", "split_by_time"]


def read_series(
    settings: Settings,
    engine: Engine,
    asset_class: str,
    as_of: datetime,
    timeframes: Sequence[str],
    min_length: int,
) -> list[CandleSeries]:
    """Every active instrument of ``asset_class`` with at least ``min_length`` candles closed by ``as_of``,
    per timeframe, with its event tensor (built the way the batch job builds it, as of ``as_of``)."""
    instruments = [i for i in get_instruments(engine, active_only=True) if i.asset_class == asset_class]
    symbols = sorted(i.symbol for i in instruments)
    calendar = settings.market_calendars.get(asset_class, "24/7")
    out: list[CandleSeries] = []
    for timeframe in timeframes:
        frames = latest_candles_many(engine, symbols, timeframe, settings.finetune.max_candles_per_series, as_of)
        inputs = [
            SeriesInput(
                timestamps=pd.DatetimeIndex(frame["ts"]),
                ohlcv=frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64),
                symbol=symbol,
                timeframe=timeframe,
                calendar=calendar,
                asset_class=asset_class,
            )
            for symbol, frame in sorted(frames.items())
            if len(frame) >= min_length
        ]
        if not inputs:
            continue
        events = EventInputs.read(settings, engine, timeframe, as_of, inputs)
        for s in inputs:
            out.append(
                CandleSeries(
                    symbol=s.symbol,
                    timeframe=timeframe,
                    timestamps=s.timestamps,
                    values=kronos_frame(s).to_numpy(dtype=np.float32),
                    stamps=_time_features(s.timestamps),
                    events=events.encode(s)[0].astype(np.float32),
                )
            )
    return out


def build_windows(series: list[CandleSeries], lookback: int, horizon: int, stride: int) -> Windows:
    """All windows of every series, oldest first per series; the newest ends on the series' last candle."""
    if lookback < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"lookback, horizon and window_stride must be >= 1, found {lookback}, {horizon}, {stride}")
    length = lookback + horizon
    rows = [
        (number, start)
        for number, s in enumerate(series)
        for start in range((len(s.timestamps) - length) % stride, len(s.timestamps) - length + 1, stride)
    ]
    return Windows(series, np.array(rows, dtype=np.int64).reshape(-1, 2), lookback, horizon)


def split_by_time(windows: Windows, validation_fraction: float) -> tuple[Windows, Windows, pd.Timestamp]:
    """(training windows, validation windows, cutoff): see the module docstring."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), found {validation_fraction}")
    if len(windows) == 0:
        raise NotEnoughDataError("no windows to split")
    first, last = windows.bounds_ns()
    cutoff = int(np.quantile(last, 1.0 - validation_fraction, method="lower"))
    train = windows.take(np.flatnonzero(last < cutoff))
    validation = windows.take(np.flatnonzero(first >= cutoff))
    return train, validation, pd.Timestamp(cutoff, unit="ns", tz="UTC")


def settings_window_check(cfg: FinetuneSettings, max_context: int) -> None:
    """ValueError naming the field when a window does not fit the model's context."""
    if cfg.lookback + cfg.horizon > max_context:
        raise ValueError(
            f"finetune.lookback + finetune.horizon ({cfg.lookback} + {cfg.horizon}) exceeds the model's "
            f"max_context ({max_context})"
        )
