"""SeriesInput validates its candles in one place; seeds are per series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.errors import InputError
from candlecast.models.base import SeriesInput, derive_seed, series_seeds

TS = pd.date_range("2024-03-04", periods=5, freq="h", tz="UTC")


def ohlcv() -> np.ndarray:
    """Five consistent candles."""
    close = np.array([100.0, 101.0, 100.5, 102.0, 101.5])
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + 0.5
    low = np.minimum(open_, close) - 0.5
    volume = np.array([10.0, 12.0, 9.0, 11.0, 10.0])
    return np.column_stack([open_, high, low, close, volume, volume * close])


def test_close_only_candles_are_stored_as_six_columns_with_nan_for_the_missing_ones() -> None:
    closes = ohlcv()[:, 3]
    rows = np.column_stack([np.full(5, np.nan), np.full(5, np.nan), np.full(5, np.nan), closes])
    s = SeriesInput(timestamps=TS, ohlcv=rows)
    assert s.ohlcv.shape == (5, 6)
    assert np.isnan(s.ohlcv[:, [0, 1, 2, 4, 5]]).all()
    assert s.last_close == closes[-1]


def test_timestamps_in_other_zones_are_converted_to_utc() -> None:
    s = SeriesInput(timestamps=TS.tz_convert("America/New_York"), ohlcv=ohlcv())
    assert str(s.timestamps.tz) == "UTC"
    assert s.timestamps[0] == TS[0]


def bad(**change: object) -> dict[str, object]:
    fields: dict[str, object] = {"timestamps": TS, "ohlcv": ohlcv()}
    fields.update(change)
    return fields


def with_value(row: int, col: int, value: float) -> np.ndarray:
    arr = ohlcv()
    arr[row, col] = value
    return arr


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (bad(timestamps=[], ohlcv=np.empty((0, 6))), "timestamps", "empty context"),  # no candles
        (bad(timestamps=TS.tz_localize(None)), "timestamps", "timezone-aware"),  # naive datetimes
        (bad(timestamps=TS[[0, 1, 3, 2, 4]]), "timestamps", "strictly increasing"),  # out of order
        (bad(timestamps=TS[[0, 1, 1, 2, 3]]), "timestamps", "strictly increasing"),  # duplicate
        (bad(timestamps=TS[:4]), "ohlcv", "timestamps has 4"),  # lengths differ
        (bad(ohlcv=ohlcv()[:, :3]), "ohlcv", "shape"),  # too few columns
        (bad(ohlcv=with_value(2, 3, np.nan)), "ohlcv", "close is missing"),  # close may not be missing
        (bad(ohlcv=with_value(1, 0, np.inf)), "ohlcv", "non-finite"),  # infinity
        (bad(ohlcv=with_value(1, 1, 1.0)), "ohlcv", "OHLC inconsistent at row 1"),  # high below the close
        (bad(ohlcv=with_value(3, 2, 1e6)), "ohlcv", "OHLC inconsistent at row 3"),  # low above the high
        (bad(ohlcv=with_value(0, 4, -1.0)), "ohlcv", "negative volume"),  # negative volume
        (bad(events=np.zeros((5, 19))), "events", r"\(5, 20\)"),  # events not (T, 20)
        (bad(events=np.full((5, 20), np.nan)), "events", "non-finite"),  # NaN events
        (bad(timeframe="2h"), "timeframe", "expected one of"),  # unknown timeframe
        (bad(calendar="LSE"), "calendar", "expected one of"),  # unknown calendar
    ],
)
def test_bad_series_raise_input_error_naming_the_field(fields: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        SeriesInput(**fields)  # type: ignore[arg-type]
    assert info.value.field == field


def test_one_seed_derives_distinct_reproducible_seeds_per_series() -> None:
    seeds = series_seeds(42, 3)
    assert seeds == series_seeds(42, 3)
    assert len(set(seeds)) == 3
    assert seeds[0] == derive_seed(42, 0)
    assert series_seeds(None, 2) == [None, None]
    with pytest.raises(ValueError, match="expected 3 per-series seeds"):
        series_seeds([1, 2], 3)
