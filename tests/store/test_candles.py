from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from candlecast.store.candles import (
    Instrument,
    candles_covering,
    latest_candles,
    latest_candles_many,
    list_instruments,
    upsert_candles,
    upsert_instruments,
    window_before,
)


def hourly(n: int, start: str = "2020-01-01", price: float = 100.0) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="h", tz="UTC")
    close = price + np.arange(n, dtype=float)
    return pd.DataFrame(
        {"ts": ts, "open": close - 0.5, "high": close + 1, "low": close - 1, "close": close,
         "volume": 10.0, "amount": np.nan}
    )  # fmt: skip


@pytest.fixture
def btc(engine: Engine) -> Engine:
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto", source="test")])
    return engine


def test_upsert_is_idempotent_and_replaces_values(btc: Engine) -> None:
    frame = hourly(50)
    with btc.begin() as conn:
        assert upsert_candles(conn, "BTCUSDT", "1h", frame) == 50
    changed = frame.assign(close=frame["close"] + 0.25)
    with btc.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", changed)
    [summary] = list_instruments(btc)
    assert summary.rows_1h == 50
    got = latest_candles(btc, "BTCUSDT", "1h", 50, datetime(2030, 1, 1, tzinfo=UTC))
    np.testing.assert_array_equal(got["close"].to_numpy(), changed["close"].to_numpy())
    assert got["amount"].isna().all()


def test_as_of_read_returns_only_candles_closed_by_then(btc: Engine) -> None:
    with btc.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", hourly(10))
    # At 05:30 the 05:00 candle is still open: the last closed one opened at 04:00.
    got = latest_candles(btc, "BTCUSDT", "1h", 3, datetime(2020, 1, 1, 5, 30, tzinfo=UTC))
    assert list(got["ts"].dt.hour) == [2, 3, 4]
    got = latest_candles(btc, "BTCUSDT", "1h", 3, datetime(2020, 1, 1, 6, tzinfo=UTC))
    assert list(got["ts"].dt.hour) == [3, 4, 5]


def test_latest_candles_many_reads_each_symbol_and_omits_empty_ones(btc: Engine) -> None:
    with btc.begin() as conn:
        upsert_instruments(conn, [Instrument("ETHUSDT", "crypto"), Instrument("SOLUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", hourly(5))
        upsert_candles(conn, "ETHUSDT", "1h", hourly(8, price=10))
    got = latest_candles_many(btc, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "1h", 4, datetime(2021, 1, 1, tzinfo=UTC))
    assert sorted(got) == ["BTCUSDT", "ETHUSDT"]
    assert got["ETHUSDT"]["close"].tolist() == [14.0, 15.0, 16.0, 17.0]


def test_windows_sliced_from_one_covering_read_equal_separate_reads(btc: Engine) -> None:
    # a gap (hours 30-39 missing) so that "the last n candles" is not "the last n hours"
    frame = hourly(80)
    with btc.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", frame[(frame.index < 30) | (frame.index >= 40)])
    first, last = datetime(2020, 1, 1, 3, tzinfo=UTC), datetime(2020, 1, 3, 20, tzinfo=UTC)
    covering = candles_covering(btc, "BTCUSDT", "1h", 12, first, last)
    for as_of in pd.date_range(first, last, freq="7h"):
        for n in (1, 5, 12):
            want = latest_candles(btc, "BTCUSDT", "1h", n, as_of.to_pydatetime())
            window = window_before(pd.DatetimeIndex(covering["ts"]), "1h", n, as_of.to_pydatetime())
            pd.testing.assert_frame_equal(covering.iloc[window].reset_index(drop=True), want, check_dtype=False)


def test_naive_timestamps_are_refused(btc: Engine) -> None:
    frame = hourly(3).assign(ts=lambda f: f["ts"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="timezone-aware"), btc.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", frame)
