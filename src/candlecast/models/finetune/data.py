"""What the training step reads: candle series, fixed-length windows over them, and their tokens.

A window is ``lookback + horizon`` consecutive candles of one (symbol, timeframe) series. It is normalised
with the mean and std of its lookback candles only (what the predictor does with a context at forecast
time; statistics over the whole window would leak the horizon into the inputs), clipped to +-5, and turned
into (s1, s2) token pairs by the frozen Kronos tokenizer (``tokenise``).

Pure data: where the series come from (the store, as of a time) and how they are cut and split is the
fine-tune job's business (``candlecast.jobs.finetune.windows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from candlecast.events import channels as ch
from candlecast.models.kronos import NORM_EPS, KronosTokenizer

__all__ = ["CLIP", "EVENT_CHANNELS", "CandleSeries", "TokenisedWindows", "Windows", "tokenise"]

CLIP = 5.0  # normalised inputs are clipped like KronosPredictor's (its default clip)
# A window "contains an event" when any of these channels is non-zero in it: release flags, surprises,
# FOMC tone, earnings, rate decisions (countdowns and leader returns are almost never zero).
EVENT_CHANNELS = slice(ch.IS_FOMC, ch.IS_RATE_DECISION + 1)


@dataclass(frozen=True)
class CandleSeries:
    """One (symbol, timeframe) series with what the model reads."""

    symbol: str
    timeframe: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (T, 6) float32: open, high, low, close, volume, amount (gaps filled)
    stamps: np.ndarray  # (T, 5) float32 time features: minute, hour, weekday, day, month
    events: np.ndarray  # (T, 20) float32 event tensor


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
