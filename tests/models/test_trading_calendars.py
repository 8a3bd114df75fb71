"""Target timestamps follow each instrument's trading calendar."""

from __future__ import annotations

import pandas as pd
import pytest

from candlecast.config import DEFAULT_MARKET_CALENDARS, DEFAULT_UNIVERSE
from candlecast.models.calendars import calendar_for, next_timestamps


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_crypto_hours_never_skip() -> None:
    got = next_timestamps(utc("2024-07-05 22:00"), "1h", 3, "24/7")
    assert list(got) == [utc("2024-07-05 23:00"), utc("2024-07-06 00:00"), utc("2024-07-06 01:00")]


def test_nyse_days_skip_weekends_and_holidays_keeping_the_time_of_day() -> None:
    # 2024-07-04 (Independence Day) is a holiday; 07-06/07 a weekend.
    got = next_timestamps(utc("2024-07-03 00:00"), "1d", 3, "XNYS")
    assert list(got) == [utc("2024-07-05"), utc("2024-07-08"), utc("2024-07-09")]


def test_nyse_hours_stay_inside_sessions_and_respect_early_closes() -> None:
    # 2024-07-03 closes early at 17:00 UTC; bars stamped at :30 as many sources do.
    got = next_timestamps(utc("2024-07-03 15:30"), "1h", 3, "XNYS")
    assert list(got) == [utc("2024-07-03 16:30"), utc("2024-07-05 13:30"), utc("2024-07-05 14:30")]


def test_nyse_hours_on_whole_hours_keep_the_bar_that_overlaps_the_open() -> None:
    # Friday 19:00 is the last bar (close 20:00 UTC in summer); Monday's 13:00 bar overlaps the 13:30 open.
    got = next_timestamps(utc("2024-07-12 19:00"), "1h", 2, "XNYS")
    assert list(got) == [utc("2024-07-15 13:00"), utc("2024-07-15 14:00")]


def test_fx_hours_skip_the_weekend_close() -> None:
    got = next_timestamps(utc("2024-07-05 20:00"), "1h", 3, "24/5")
    assert list(got) == [utc("2024-07-05 21:00"), utc("2024-07-07 22:00"), utc("2024-07-07 23:00")]


def test_fx_days_are_weekdays() -> None:
    got = next_timestamps(utc("2024-07-05"), "1d", 2, "24/5")
    assert list(got) == [utc("2024-07-08"), utc("2024-07-09")]


def test_asset_class_picks_the_calendar_and_unknown_symbols_never_close() -> None:
    assert calendar_for("SPY", DEFAULT_UNIVERSE, DEFAULT_MARKET_CALENDARS) == "XNYS"
    assert calendar_for("EURUSD", DEFAULT_UNIVERSE, DEFAULT_MARKET_CALENDARS) == "24/5"
    assert calendar_for("BTCUSDT", DEFAULT_UNIVERSE, DEFAULT_MARKET_CALENDARS) == "24/7"
    assert calendar_for("NOT-LISTED", DEFAULT_UNIVERSE, DEFAULT_MARKET_CALENDARS) == "24/7"


@pytest.mark.parametrize(
    ("timeframe", "calendar", "message"),
    [
        ("2h", "24/7", "unknown timeframe"),  # not an accepted candle length
        ("1h", "LSE", "unknown calendar"),  # not a known calendar
    ],
)
def test_unknown_timeframe_or_calendar_is_a_value_error(timeframe: str, calendar: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_timestamps(utc("2024-07-05"), timeframe, 2, calendar)
