"""EventEncoder: calendar, rate changes and leader candles -> the (T, 20) float32 event tensor.

A candle stamped ``ts`` covers ``[ts, ts + timeframe)``. Calendar values in its row are public by the
candle's close; leader values by its open. docs/events.md defines every channel and the leakage rules;
this module implements them, vectorised over candles with ``np.searchsorted``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from candlecast.config import EventSettings
from candlecast.events import channels as ch

__all__ = ["TIMEFRAMES", "EventEncoder"]

_HOUR_NS = 3_600 * 10**9
_DAY_NS = 24 * _HOUR_NS
# Timeframes the encoder accepts -> candle length in nanoseconds.
TIMEFRAMES: dict[str, int] = {"1h": _HOUR_NS, "1d": _DAY_NS}

# Rows with these statuses did not happen on that date (a moved event is a row of its own).
_DROPPED_STATUSES = frozenset({"cancelled", "canceled", "postponed"})
# Emergency meetings: flagged when they happen, but not known in advance, so no countdown to them.
_UNSCHEDULED_STATUS = "unscheduled"
# Countdown channels (sin index) -> the event type they count down to; cos is sin + 1.
_COUNTDOWNS: dict[int, str] = {ch.DAYS_TO_FOMC_SIN: "fomc", ch.DAYS_TO_CPI_SIN: "cpi"}
_CACHE_SIZE = 8


@dataclass(frozen=True)
class _Releases:
    """Events of one channel: the instants they became public (sorted, ns UTC) and their values."""

    times: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class _PreparedEvents:
    """Everything the encoder needs from one calendar and rates table; cached by content."""

    flags: dict[int, np.ndarray]  # 0/1 channel -> release instants
    values: dict[int, _Releases]  # surprise z-scores and the hawkish score
    earnings: dict[str, np.ndarray]  # symbol -> release instants
    schedule: dict[str, np.ndarray]  # "fomc" / "cpi" -> instants scheduled in advance


@dataclass(frozen=True)
class _LeaderSeries:
    """One leader's candles: when each closed (ns UTC), its close and its log return."""

    close_ns: np.ndarray
    close: np.ndarray
    log_return: np.ndarray


class EventEncoder:
    """Builds event tensors; holds the settings and a small cache of prepared calendars.

    The cache is keyed by the content of the calendar and rates frames, so encoding many instruments
    against the same calendar computes the surprise and tone series once, and a changed calendar is
    never served stale.
    """

    def __init__(self, settings: EventSettings | None = None) -> None:
        self.settings = settings or EventSettings()
        self._cache: OrderedDict[str, _PreparedEvents] = OrderedDict()
        self._cache_lock = threading.Lock()  # one encoder may serve several threads

    def encode(
        self,
        timestamps: pd.DatetimeIndex | pd.Series,
        timeframe: str,
        calendar: pd.DataFrame | None,
        leaders: Mapping[str, pd.DataFrame] | None,
        rates: pd.DataFrame | None = None,
        *,
        symbol: str | None = None,
        leader_timeframes: Mapping[str, str] | None = None,
    ) -> np.ndarray:
        """The ``(len(timestamps), 20)`` float32 event tensor of one instrument.

        ``timestamps``: candle open times, tz-aware, strictly increasing. ``timeframe``: "1h" or "1d".
        ``calendar``: event_type, scheduled_at (tz-aware) and optionally actual, forecast, previous,
        symbol, status. ``leaders``: symbol (BTCUSDT, SPY, DXY, VIX) -> candles with a ``close`` column
        and a ``ts`` column or index. ``rates``: central_bank_rates rows (bank_code, change_date, rate,
        optionally previous_rate). ``symbol``: the instrument, for its earnings rows.
        ``leader_timeframes``: "1h" or "1d" per leader; inferred when absent (daily when stamped only at
        00:00 UTC or a day apart).
        """
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"timeframe must be one of {sorted(TIMEFRAMES)}, got {timeframe!r}")
        step = TIMEFRAMES[timeframe]
        opens = _utc_ns(timestamps, "timestamps")
        if len(opens) > 1 and not np.all(np.diff(opens) > 0):
            raise ValueError("timestamps must be strictly increasing (sorted, no duplicates)")

        out = np.zeros((len(opens), ch.N_CHANNELS), dtype=np.float64)
        if len(opens) == 0:
            return out.astype(np.float32)
        prepared = self._prepared(calendar, rates)
        carry = int(self.settings.release_carry_max_hours * _HOUR_NS)

        for channel, times in prepared.flags.items():
            rows = _release_rows(opens, step, times, carry)
            out[rows[rows >= 0], channel] = 1.0
        if symbol is not None:
            times = prepared.earnings.get(symbol.strip().upper(), np.empty(0, dtype=np.int64))
            rows = _release_rows(opens, step, times, carry)
            out[rows[rows >= 0], ch.IS_EARNINGS] = 1.0
        for channel, releases in prepared.values.items():
            rows = _release_rows(opens, step, releases.times, carry)
            _scatter_last(out[:, channel], rows, releases.values)

        periods = {"fomc": self.settings.fomc_period_days, "cpi": self.settings.cpi_period_days}
        for sin_channel, event_type in _COUNTDOWNS.items():
            sin, cos = _countdown(opens, prepared.schedule[event_type], periods[event_type])
            out[:, sin_channel], out[:, sin_channel + 1] = sin, cos

        self._encode_leaders(out, opens, step, leaders or {}, leader_timeframes or {})
        return out.astype(np.float32)

    def _encode_leaders(
        self,
        out: np.ndarray,
        opens: np.ndarray,
        step: int,
        leaders: Mapping[str, pd.DataFrame],
        leader_timeframes: Mapping[str, str],
    ) -> None:
        """Channels 14-17: prior-candle leader log returns (masked when closed) and the VIX z-score."""
        known = {*ch.LEADER_RETURN_CHANNELS, ch.VIX_LEADER}
        unknown = sorted(set(leaders) - known)
        if unknown:
            raise ValueError(f"leaders has unknown symbol(s) {unknown}; expected some of {sorted(known)}")
        max_gap = int(self.settings.leader_max_gap_hours * _HOUR_NS)
        for name, frame in leaders.items():
            if frame is None or len(frame) == 0:  # no candle of this leader in the window: its channel stays 0
                continue
            field = f"leaders[{name!r}]"
            leader_step = _leader_step(frame, field, leader_timeframes.get(name), step)
            series = _leader_series(frame, field, leader_step, max_gap)
            # The leader candle that closed last at or before each row's open.
            last = np.searchsorted(series.close_ns, opens, side="right") - 1
            has_prior = last >= 0
            last = np.maximum(last, 0)
            if name == ch.VIX_LEADER:
                z = _rolling_z(series.close, self.settings.vix_window, self.settings.vix_min_history)
                fresh = has_prior & (opens - series.close_ns[last] <= max_gap) & np.isfinite(z[last])
                out[:, ch.VIX_LEVEL_Z] = np.where(fresh, z[last], 0.0)
            else:
                # Only a candle that closed during the previous candle's span: no forward fill.
                fresh = has_prior & (series.close_ns[last] > opens - step) & np.isfinite(series.log_return[last])
                out[:, ch.LEADER_RETURN_CHANNELS[name]] = np.where(fresh, series.log_return[last], 0.0)

    def _prepared(self, calendar: pd.DataFrame | None, rates: pd.DataFrame | None) -> _PreparedEvents:
        events = _normalise_calendar(calendar)
        changes = _normalise_rates(rates)
        key = _digest(events, changes)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        prepared = _prepare(events, changes, self.settings)
        with self._cache_lock:
            self._cache[key] = prepared
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return prepared


# ---------------------------------------------------------------------------------------------------
# Inputs


def _utc_ns(values: object, field: str) -> np.ndarray:
    """Tz-aware timestamps -> int64 nanoseconds since the epoch (UTC); naive or missing ones are errors."""
    try:
        index = pd.DatetimeIndex(values)  # type: ignore[arg-type]  # any sequence of timestamps; pandas checks
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: not timestamps ({exc})") from None
    if index.tz is None:
        raise ValueError(f"{field} must be timezone-aware (UTC); got naive timestamps")
    if index.hasnans:
        raise ValueError(f"{field} has missing timestamps")
    return index.tz_convert("UTC").as_unit("ns").asi8  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs


def _floats(frame: pd.DataFrame, column: str, field: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), np.nan)
    try:
        return pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}.{column}: not numeric ({exc})") from None


def _texts(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series("", index=frame.index)
    return frame[column].fillna("").astype(str).str.strip()


def _normalise_calendar(calendar: pd.DataFrame | None) -> pd.DataFrame:
    """Validated calendar rows, oldest first: event_type, time (ns), actual, forecast, previous, symbol, status."""
    if calendar is None:
        calendar = pd.DataFrame(columns=["event_type", "scheduled_at"])
    missing = sorted({"event_type", "scheduled_at"} - set(calendar.columns))
    if missing:
        raise ValueError(f"calendar is missing column(s) {missing}")
    times = _utc_ns(calendar["scheduled_at"], "calendar.scheduled_at") if len(calendar) else np.empty(0, np.int64)
    events = pd.DataFrame(
        {
            "event_type": _texts(calendar, "event_type").str.lower().to_numpy(),
            "time": times,
            "actual": _floats(calendar, "actual", "calendar"),
            "forecast": _floats(calendar, "forecast", "calendar"),
            "previous": _floats(calendar, "previous", "calendar"),
            "symbol": _texts(calendar, "symbol").str.upper().to_numpy(),
            "status": _texts(calendar, "status").str.lower().to_numpy(),
        }
    )
    events = events[~events["status"].isin(_DROPPED_STATUSES)]
    return events.sort_values("time", kind="stable").reset_index(drop=True)


def _normalise_rates(rates: pd.DataFrame | None) -> pd.DataFrame:
    """Central-bank rate records per bank, oldest first: bank, day (ns, 00:00 UTC), rate, change."""
    if rates is None or len(rates) == 0:
        return pd.DataFrame({"bank": [], "day": np.empty(0, np.int64), "rate": [], "change": []})
    missing = sorted({"bank_code", "change_date", "rate"} - set(rates.columns))
    if missing:
        raise ValueError(f"rates is missing column(s) {missing}")
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(rates["change_date"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"rates.change_date: not dates ({exc})") from None
    if dates.hasnans:
        raise ValueError("rates.change_date has missing dates")
    if dates.tz is not None:
        dates = dates.tz_convert("UTC").tz_localize(None)
    frame = pd.DataFrame(
        {
            "bank": _texts(rates, "bank_code").str.upper().to_numpy(),
            "day": dates.normalize().as_unit("ns").asi8,  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs
            "rate": _floats(rates, "rate", "rates"),
            "stated_previous": _floats(rates, "previous_rate", "rates"),
        }
    )
    frame = frame.sort_values(["bank", "day"], kind="stable").reset_index(drop=True)
    # A record's change: against its stated previous rate, else against the bank's record before it.
    previous = frame["stated_previous"].fillna(frame.groupby("bank")["rate"].shift(1))
    frame["change"] = frame["rate"] - previous
    return frame.drop(columns="stated_previous")


def _digest(*frames: pd.DataFrame) -> str:
    """A content hash of normalised frames, the cache key."""
    hasher = hashlib.blake2b(digest_size=16)
    for frame in frames:
        hasher.update(repr((list(frame.columns), len(frame))).encode())
        hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return hasher.hexdigest()


# ---------------------------------------------------------------------------------------------------
# Calendar -> per-channel releases


def _prepare(events: pd.DataFrame, changes: pd.DataFrame, settings: EventSettings) -> _PreparedEvents:
    def rows_of(event_type: str) -> pd.DataFrame:
        return events[events["event_type"] == event_type]

    flags = {
        channel: rows_of(event_type)["time"].to_numpy()
        for event_type, channel in ch.FLAG_CHANNELS.items()
        if channel != ch.IS_EARNINGS
    }
    # Rate changes are dated by day only: public, at the latest, by the end of that UTC day.
    changed = changes[np.isfinite(changes["change"]) & (changes["change"] != 0)]
    flags[ch.IS_RATE_DECISION] = np.sort(
        np.concatenate([flags[ch.IS_RATE_DECISION], changed["day"].to_numpy() + _DAY_NS - 1])
    )

    values = {
        channel: _surprise_z(rows_of(event_type), settings) for event_type, channel in ch.SURPRISE_CHANNELS.items()
    }
    values[ch.FOMC_HAWKISH_SCORE] = _hawkish_score(rows_of("fomc"), changes, settings)

    earnings = rows_of("earnings")
    by_symbol = {
        str(name): group["time"].to_numpy() for name, group in earnings[earnings["symbol"] != ""].groupby("symbol")
    }
    schedule = {
        event_type: np.unique(rows_of(event_type).loc[lambda f: f["status"] != _UNSCHEDULED_STATUS, "time"])
        for event_type in _COUNTDOWNS.values()
    }
    return _PreparedEvents(flags=flags, values=values, earnings=by_symbol, schedule=schedule)


def _surprise_z(rows: pd.DataFrame, settings: EventSettings) -> _Releases:
    """(actual - forecast) / std of the previous ``surprise_window`` surprises, released strictly before.

    Only events with both actual and forecast get a value; too little history or a zero std gives 0.
    """
    surprise = (rows["actual"] - rows["forecast"]).to_numpy()
    known = np.isfinite(surprise)
    times, surprise = rows["time"].to_numpy()[known], surprise[known]
    first_at_same_time = np.searchsorted(times, times, side="left")
    z = np.zeros(len(times))
    for i, stop in enumerate(first_at_same_time):
        history = surprise[max(0, stop - settings.surprise_window) : stop]
        if len(history) < max(settings.surprise_min_history, 2):
            continue
        std = history.std(ddof=1)
        if std > 0:
            z[i] = np.clip(surprise[i] / std, -settings.surprise_clip, settings.surprise_clip)
    return _Releases(times, z)


def _hawkish_score(fomc: pd.DataFrame, changes: pd.DataFrame, settings: EventSettings) -> _Releases:
    """FOMC tone proxy: rate change / ``hawkish_step`` clipped to [-1, 1], 0 when the change is unknown.

    The change is the FOMC row's actual - previous; failing that, the Fed's central_bank_rates record on
    the decision's UTC date.
    """
    change = (fomc["actual"] - fomc["previous"]).to_numpy()
    fed = changes[changes["bank"].isin([code.upper() for code in settings.fed_bank_codes])]
    by_day = fed.drop_duplicates("day", keep="last").set_index("day")["change"]
    decision_day = fomc["time"].to_numpy() // _DAY_NS * _DAY_NS
    from_rates = by_day.reindex(decision_day).to_numpy(dtype=np.float64, na_value=np.nan)
    change = np.where(np.isfinite(change), change, from_rates)
    score = np.clip(np.nan_to_num(change / settings.hawkish_step, nan=0.0), -1.0, 1.0)
    return _Releases(fomc["time"].to_numpy(), score)


# ---------------------------------------------------------------------------------------------------
# Placement on candles


def _release_rows(opens: np.ndarray, step: int, times: np.ndarray, carry: int) -> np.ndarray:
    """The release candle of each instant: the candle containing it, or, when it falls in a gap between
    two candles (market closed), the next candle if that opens within ``carry``. -1 when none."""
    if len(times) == 0:
        return np.empty(0, dtype=np.int64)
    last = np.searchsorted(opens, times, side="right") - 1  # last candle opening at or before
    has_prior = last >= 0
    inside = has_prior & (times < opens[np.maximum(last, 0)] + step)
    following = np.minimum(last + 1, len(opens) - 1)
    carried = ~inside & has_prior & (last + 1 < len(opens)) & (opens[following] - times <= carry)
    return np.where(inside, last, np.where(carried, last + 1, -1))


def _scatter_last(column: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """column[rows] = values, skipping -1; when several land on one row the latest release wins."""
    keep = rows >= 0
    rows, values = rows[keep], values[keep]
    if len(rows) == 0:
        return
    latest = np.append(rows[1:] != rows[:-1], True)  # rows are non-decreasing in release time
    column[rows[latest]] = values[latest]


def _countdown(opens: np.ndarray, schedule: np.ndarray, period_days: float) -> tuple[np.ndarray, np.ndarray]:
    """sin/cos of 2*pi*(days until the next scheduled event at or after the open)/period; (0, 0) when no
    event is scheduled within one period."""
    if len(schedule) == 0:
        zeros = np.zeros(len(opens))
        return zeros, zeros.copy()
    upcoming = np.searchsorted(schedule, opens, side="left")
    has_next = upcoming < len(schedule)
    days = (schedule[np.minimum(upcoming, len(schedule) - 1)] - opens) / _DAY_NS
    within = has_next & (days < period_days)
    phase = 2 * np.pi * days / period_days
    return np.where(within, np.sin(phase), 0.0), np.where(within, np.cos(phase), 0.0)


# ---------------------------------------------------------------------------------------------------
# Leaders


def _leader_step(frame: pd.DataFrame, field: str, timeframe: str | None, target_step: int) -> int:
    """A leader's candle length: given; else daily when every stamp is 00:00 UTC or stamps are at least a
    day apart; else hourly. When unsure the longer length is chosen: it only makes values later, never early."""
    if timeframe is not None:
        if timeframe not in TIMEFRAMES:
            raise ValueError(f"leader_timeframes for {field}: expected one of {sorted(TIMEFRAMES)}")
        step = TIMEFRAMES[timeframe]
    else:
        opens = np.sort(_leader_opens(frame, field))
        midnights = len(opens) > 0 and bool(np.all(opens % _DAY_NS == 0))
        day_apart = len(opens) > 1 and bool(np.min(np.diff(opens)) >= _DAY_NS)
        step = _DAY_NS if midnights or day_apart else _HOUR_NS
    if step < target_step:
        raise ValueError(f"{field} has intraday candles; a daily target needs daily leaders")
    return step


def _leader_opens(frame: pd.DataFrame, field: str) -> np.ndarray:
    source = frame["ts"] if "ts" in frame.columns else frame.index
    return _utc_ns(source, f"{field}.ts")


def _leader_series(frame: pd.DataFrame, field: str, step: int, max_gap: int) -> _LeaderSeries:
    """Close times, closes and log returns (vs the leader's previous candle, if within ``max_gap``)."""
    if "close" not in frame.columns:
        raise ValueError(f"{field} has no 'close' column")
    opens = _leader_opens(frame, field)
    close = _floats(frame, "close", field)
    order = np.argsort(opens, kind="stable")
    opens, close = opens[order], close[order]
    if np.any(np.diff(opens) == 0):
        raise ValueError(f"{field} has duplicate timestamps")
    log_return = np.full(len(close), np.nan)
    if len(close) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = close[1:] / close[:-1]
            valid = (close[1:] > 0) & (close[:-1] > 0) & np.isfinite(ratio) & (np.diff(opens) <= max_gap)
            log_return[1:] = np.where(valid, np.log(np.where(valid, ratio, 1.0)), np.nan)
    return _LeaderSeries(close_ns=opens + step, close=close, log_return=log_return)


def _rolling_z(values: np.ndarray, window: int, min_history: int) -> np.ndarray:
    """(x - mean) / std over the last ``window`` observations up to and including x; NaN if undefined."""
    series = pd.Series(values)
    rolling = series.rolling(window, min_periods=max(min_history, 2))
    std = rolling.std(ddof=1).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (values - rolling.mean().to_numpy()) / std
    return np.where(std > 0, z, np.nan)
