"""Training windows: an asset class's candles and event tensors as of a time, cut into fixed-length
windows, split by time, and tokenised with the frozen Kronos tokenizer.

A window is ``lookback + horizon`` consecutive candles of one (symbol, timeframe) series. It is normalised
with the mean and std of its lookback candles only (what the predictor does with a context at forecast
time; statistics over the whole window would leak the horizon into the inputs), clipped to +-5, and turned
into (s1, s2) token pairs. Windows start every ``window_stride`` candles, aligned so the newest ends on the
newest candle closed by the as-of time.

Split by time: windows that end before the cutoff train, windows that start at or after it validate, and
the few that straddle it are dropped, so no validation candle is ever seen in training. The cutoff is the
time before which ``1 - validation_fraction`` of the windows end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch
from sqlalchemy.engine import Engine

from candlecast.config import FinetuneSettings, Settings
from candlecast.events import channels as ch
from candlecast.jobs.events import EventInputs
from candlecast.models.base import OHLCV_COLUMNS, SeriesInput
from candlecast.models.kronos import NORM_EPS, KronosTokenizer, _time_features
from candlecast.models.kronos_forecaster import kronos_frame
from candlecast.store.candles import get_instruments, latest_candles_many

__all__ = [
    "CLIP",
    "CandleSeries",
    "NotEnoughDataError",
    "TokenisedWindows",
    "Windows",
    "build_windows",
    "read_series",
    "split_by_time",
    "tokenise",
]

CLIP = 5.0  # normalised inputs are clipped like KronosPredictor's (its default clip)
# A window "contains an event" when any of these channels is non-zero in it: release flags, surprises,
# FOMC tone, earnings, rate decisions (countdowns and leader returns are almost never zero).
EVENT_CHANNELS = slice(ch.IS_FOMC, ch.IS_RATE_DECISION + 1)


class NotEnoughDataError(ValueError):
    """Too few candles (or windows) for a fine-tune; the message says what was found."""


@dataclass(frozen=True)
class CandleSeries:
    """One (symbol, timeframe) series with what the model reads."""

    symbol: str
    timeframe: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (T, 6) float32: open, high, low, close, volume, amount (gaps filled)
    stamps: np.ndarray  # (T, 5) float32 time features: minute, hour, weekday, day, month
    events: np.ndarray  # (T, 20) float32 event tensor


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


@dataclass(frozen=True)
class Windows:
    """Windows over some series: ``rows[i] = (series number, first candle)``; all have the same length."""

    series: list[CandleSeries]
    rows: np.ndarray  # (N, 2) int64
    lookback: int
    horizon: int

    @property
    def length(self) -> int:
        return self.lookback + self.horizon

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray | Sequence[int]) -> Windows:
        return Windows(self.series, self.rows[np.asarray(index, dtype=np.int64)], self.lookback, self.horizon)

    def thin(self, limit: int) -> Windows:
        """At most ``limit`` windows, evenly spread over the set (which is in time order per series)."""
        if len(self) <= limit:
            return self
        return self.take(np.unique(np.linspace(0, len(self) - 1, limit).round().astype(np.int64)))

    def bounds_ns(self) -> tuple[np.ndarray, np.ndarray]:
        """Open time (ns UTC) of each window's first and last candle."""
        first = np.empty(len(self), dtype=np.int64)
        last = np.empty(len(self), dtype=np.int64)
        for i, (s, start) in enumerate(self.rows):
            ts = self.series[s].timestamps.asi8
            first[i], last[i] = ts[start], ts[start + self.length - 1]
        return first, last

    def has_events(self) -> np.ndarray:
        """(N,) bool: the window holds a release, surprise, FOMC tone, earnings or rate-decision value."""
        flags = [np.any(self.series[s].events[start : start + self.length, EVENT_CHANNELS]) for s, start in self.rows]
        return np.array(flags, dtype=bool).reshape(-1)

    def arrays(self, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised candles (B, W, 6), time features (B, W, 5) and events (B, W, 20) of some windows."""
        x, stamps, events = [], [], []
        for s, start in self.rows[np.asarray(index, dtype=np.int64)]:
            series, stop = self.series[s], start + self.length
            values = series.values[start:stop]
            lookback = values[: self.lookback]
            mean, std = lookback.mean(axis=0), lookback.std(axis=0)
            x.append(np.clip((values - mean) / (std + NORM_EPS), -CLIP, CLIP))
            stamps.append(series.stamps[start:stop])
            events.append(series.events[start:stop])
        return np.stack(x).astype(np.float32), np.stack(stamps), np.stack(events)

    def describe(self) -> dict[str, int]:
        """Window counts per ``symbol timeframe``."""
        counts: dict[str, int] = {}
        for s, _ in self.rows:
            key = f"{self.series[s].symbol} {self.series[s].timeframe}"
            counts[key] = counts.get(key, 0) + 1
        return counts


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


@dataclass(frozen=True)
class TokenisedWindows:
    """Windows with their (s1, s2) tokens, (N, W) each, stored as int16 (vocabularies are 2**10)."""

    windows: Windows
    s1: torch.Tensor
    s2: torch.Tensor
    has_events: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        """(s1, s2) long (B, W), stamps (B, W, 5) and events (B, W, 20) for windows ``index``."""
        _, stamps, events = self.windows.arrays(index)
        rows = torch.from_numpy(np.asarray(index, dtype=np.int64))
        return (
            self.s1[rows].long().to(device),
            self.s2[rows].long().to(device),
            torch.from_numpy(stamps).to(device),
            torch.from_numpy(events).to(device),
        )


def tokenise(
    tokenizer: KronosTokenizer, windows: Windows, device: torch.device, batch_size: int = 256
) -> TokenisedWindows:
    """Tokens of every window with the frozen tokenizer (``encode(half=True)``), in batches."""
    if max(2**tokenizer.s1_bits, 2**tokenizer.s2_bits) > 2**15:
        raise ValueError("token ids do not fit int16; this tokenizer has more than 15 bits per token")
    s1_parts, s2_parts = [], []
    tokenizer.eval()
    with torch.inference_mode():
        for begin in range(0, len(windows), batch_size):
            x, _, _ = windows.arrays(np.arange(begin, min(begin + batch_size, len(windows))))
            s1, s2 = tokenizer.encode(torch.from_numpy(x).to(device), half=True)
            s1_parts.append(s1.to(torch.int16).cpu())
            s2_parts.append(s2.to(torch.int16).cpu())
    empty = torch.empty(0, windows.length, dtype=torch.int16)
    return TokenisedWindows(
        windows,
        torch.cat(s1_parts) if s1_parts else empty,
        torch.cat(s2_parts) if s2_parts else empty,
        windows.has_events(),
    )


def settings_window_check(cfg: FinetuneSettings, max_context: int) -> None:
    """ValueError naming the field when a window does not fit the model's context."""
    if cfg.lookback + cfg.horizon > max_context:
        raise ValueError(
            f"finetune.lookback + finetune.horizon ({cfg.lookback} + {cfg.horizon}) exceeds the model's "
            f"max_context ({max_context})"
        )
