"""Trading calendars: which candle timestamps come next for an instrument.

A forecast of ``pred_len`` steps is laid out on the candles the market will actually print, so a daily
equity forecast made on a Friday continues on Monday (or Tuesday after a holiday), and an hourly FX forecast
skips the weekend. Three calendars are known:

- ``"24/7"``: never closes (crypto).
- ``"24/5"``: closed from Friday 22:00 to Sunday 22:00 UTC (FX; used as an approximation for commodities and
  indices, which trade nearly around the clock on weekdays).
- ``"XNYS"``: New York Stock Exchange sessions from ``exchange_calendars`` (holidays and early closes included).

Daily candles are placed on trading days, keeping the time of day of the last candle (00:00 UTC for most
sources). An intraday candle is kept when its interval ``[ts, ts + step)`` overlaps an open period, which
works whether a source stamps hourly equity bars at 13:30 or at 14:00.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = [
    "CALENDARS",
    "TIMEFRAMES",
    "calendar_for",
    "next_timestamps",
    "timeframe_step",
    "warm_up",
]

CALENDARS: tuple[str, ...] = ("24/7", "24/5", "XNYS")

# Accepted timeframe names -> candle length.
TIMEFRAMES: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1),
    "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15),
    "30m": pd.Timedelta(minutes=30),
    "1h": pd.Timedelta(hours=1),
    "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1),
}

_DAY = pd.Timedelta(days=1)
_WEEK_NS = 7 * 24 * 3600 * 10**9
# The 24/5 weekly close, as offsets from Monday 00:00 UTC: Friday 22:00 -> Sunday 22:00.
_FX_CLOSE_START_NS = (4 * 24 + 22) * 3600 * 10**9
_FX_CLOSE_END_NS = (6 * 24 + 22) * 3600 * 10**9


def timeframe_step(timeframe: str) -> pd.Timedelta:
    """The candle length of ``timeframe`` ("1h", "1d", ...); ValueError naming the accepted values."""
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {sorted(TIMEFRAMES)}") from None


def calendar_for(symbol: str, universe: dict[str, str], market_calendars: dict[str, str]) -> str:
    """The calendar of ``symbol``: its asset class (from the universe) mapped through ``market_calendars``.

    Symbols outside the universe are treated as never closing ("24/7").
    """
    asset_class = universe.get(symbol)
    if asset_class is None:
        return "24/7"
    return market_calendars.get(asset_class, "24/7")


def next_timestamps(last: pd.Timestamp, timeframe: str, count: int, calendar: str = "24/7") -> pd.DatetimeIndex:
    """The ``count`` candle timestamps (UTC) that follow the candle stamped ``last`` on ``calendar``."""
    step = timeframe_step(timeframe)
    if calendar not in CALENDARS:
        raise ValueError(f"unknown calendar {calendar!r}; expected one of {list(CALENDARS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, found {count}")
    last = _as_utc(last)
    if count == 0:
        return pd.DatetimeIndex([], tz="UTC")
    if calendar == "24/7":
        return pd.date_range(last + step, periods=count, freq=step, tz="UTC")
    if step >= _DAY:
        return _next_days(last, count, calendar, step)
    return _next_intraday(last, step, count, calendar)


def warm_up() -> None:
    """Build the exchange calendars now (about a second) rather than during the first request."""
    _xnys_open_close()


def _as_utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return ts.tz_convert("UTC").as_unit("ns")


def _next_days(last: pd.Timestamp, count: int, calendar: str, step: pd.Timedelta) -> pd.DatetimeIndex:
    """Trading days after ``last``'s date, keeping its time of day."""
    time_of_day = last - last.normalize()
    day = last.normalize().tz_localize(None)
    if calendar == "XNYS":
        sessions = _xnys_sessions()
        start = int(sessions.searchsorted(day, side="right"))
        days = sessions[start : start + count]
        if len(days) < count:
            raise ValueError(f"the XNYS calendar ends at {sessions[-1].date()}; cannot place {count} sessions")
    else:  # 24/5: weekdays
        days = pd.bdate_range(day + step, periods=count)
    return (days + time_of_day).tz_localize("UTC")


def _next_intraday(last: pd.Timestamp, step: pd.Timedelta, count: int, calendar: str) -> pd.DatetimeIndex:
    """Candles after ``last`` spaced by ``step`` whose interval overlaps an open period."""
    found: list[pd.DatetimeIndex] = []
    have = 0
    start = last + step
    # Draw candidates in chunks (about two weeks of extra room for closures) until enough are open.
    chunk = count * 4 + int(pd.Timedelta(days=14) / step)
    while have < count:
        candidates = pd.date_range(start, periods=chunk, freq=step)
        keep = candidates[_open_mask(candidates, step, calendar)]
        found.append(keep)
        have += len(keep)
        start = candidates[-1] + step
    return pd.DatetimeIndex(found[0].append(found[1:])[:count])


def _open_mask(starts: pd.DatetimeIndex, step: pd.Timedelta, calendar: str) -> np.ndarray:
    ends = starts + step
    if calendar == "24/5":
        # Offset of each candle within its week (weeks start Monday 00:00 UTC; the epoch was a Thursday).
        monday0 = pd.Timestamp("1970-01-05", tz="UTC").value
        start_off = (starts.asi8 - monday0) % _WEEK_NS  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs
        length = step.value
        # Open unless the whole candle sits inside the weekly close.
        inside_close = (start_off >= _FX_CLOSE_START_NS) & (start_off + length <= _FX_CLOSE_END_NS)
        return ~inside_close
    opens, closes = _xnys_open_close()
    if starts[-1] > closes[-1]:
        raise ValueError(f"the XNYS calendar ends at {closes[-1].date()}; cannot place candles after it")
    # The last session opening before each candle ends; the candle is open if it starts before that close.
    open_ns: np.ndarray = opens.asi8  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs
    end_ns: np.ndarray = ends.asi8  # type: ignore[attr-defined]  # as above
    idx = np.searchsorted(open_ns, end_ns, side="left") - 1
    valid = idx >= 0
    session_close = np.where(valid, closes.asi8[np.clip(idx, 0, None)], np.iinfo(np.int64).min)  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs
    return valid & (starts.asi8 < session_close)  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs


@lru_cache(maxsize=1)
def _xnys():  # type: ignore[no-untyped-def]
    import exchange_calendars

    end = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=5 * 365)).normalize().tz_localize(None)
    return exchange_calendars.get_calendar("XNYS", start="1990-01-01", end=end)


def _xnys_sessions() -> pd.DatetimeIndex:
    return _xnys().sessions


@lru_cache(maxsize=1)
def _xnys_open_close() -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    schedule = _xnys().schedule
    return pd.DatetimeIndex(schedule["open"]), pd.DatetimeIndex(schedule["close"])
