"""Property tests of the event tensor on random calendars and candles: no look-ahead, placement, windows.

Each example builds a random scenario (hourly or daily target, continuous or gappy candles around the
March or November DST switch, a random calendar, rate records and leaders) from a drawn seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from candlecast.config import EventSettings
from candlecast.events import EventEncoder
from candlecast.events import channels as ch

SETTINGS = EventSettings(surprise_min_history=3, vix_window=30, vix_min_history=5)
TYPES = ["fomc", "cpi", "nfp", "gdp", "pce", "earnings", "rate_decision", "ism"]
COUNTDOWN_TYPES = {"fomc", "cpi"}
COUNTDOWN_CHANNELS = [ch.DAYS_TO_FOMC_SIN, ch.DAYS_TO_FOMC_COS, ch.DAYS_TO_CPI_SIN, ch.DAYS_TO_CPI_COS]
HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)


@dataclass
class Scenario:
    timeframe: str
    step: pd.Timedelta
    gaps: str
    opens: pd.DatetimeIndex
    calendar: pd.DataFrame
    rates: pd.DataFrame
    leaders: dict[str, pd.DataFrame]


def random_values(rng: np.random.Generator, n: int, missing: float = 0.25) -> np.ndarray:
    values = rng.normal(0, 1, n).round(3)
    values[rng.random(n) < missing] = np.nan
    return values


def walk(rng: np.random.Generator, index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))}, index=index)


def random_events(
    rng: np.random.Generator, n: int, start: pd.Timestamp, span: pd.Timedelta, types: list[str], grid: pd.Timedelta
) -> pd.DataFrame:
    times = pd.DatetimeIndex(start + span * rng.random(n))
    on_grid = rng.random(n) < 0.3  # some exactly on a candle boundary
    times = times.where(~on_grid, times.floor(grid))
    return pd.DataFrame(
        {
            "event_type": rng.choice(types, n),
            "scheduled_at": times,
            "actual": random_values(rng, n),
            "forecast": random_values(rng, n),
            "previous": random_values(rng, n),
            "symbol": rng.choice(["AAPL", "MSFT", ""], n),
            "status": rng.choice(["confirmed", "estimated", "unscheduled", "cancelled"], n, p=[0.6, 0.25, 0.1, 0.05]),
        }
    )


def build(seed: int, timeframe: str, gaps: str) -> Scenario:
    rng = np.random.default_rng(seed)
    step = HOUR if timeframe == "1h" else DAY
    start = pd.Timestamp(str(rng.choice(["2024-03-06", "2024-10-30"])) if timeframe == "1h" else "2023-09-20", tz="UTC")
    full = pd.date_range(start, periods=240 if timeframe == "1h" else 160, freq=step)
    session = (full.dayofweek < 5) & ((full.hour >= 13) & (full.hour <= 20) if timeframe == "1h" else True)
    keep = {"full": np.ones(len(full), bool), "session": session, "random": rng.random(len(full)) < 0.8}[gaps]
    opens = full[keep]
    end = full[-1]

    history = pd.Timedelta(days=90)
    calendar = pd.concat(
        [
            random_events(rng, 60, start - history, end - start + history * 2, TYPES, step),
            random_events(rng, 40, start - history, end - start + history, ["cpi", "nfp"], step),
        ],
        ignore_index=True,
    )
    calendar["status"] = calendar["status"].where(calendar["event_type"].isin(TYPES[:7]), "confirmed")

    # Rate records on random days, on FOMC decision days and on the days after them.
    days = pd.date_range(start - history, end + pd.Timedelta(days=30), freq="D")
    fomc_days = calendar.loc[calendar["event_type"] == "fomc", "scheduled_at"].dt.floor("D")
    candidates = days[rng.choice(len(days), 16, replace=False)].append(pd.DatetimeIndex(fomc_days))
    candidates = candidates.append(candidates[-len(fomc_days) :] + DAY)
    picked = candidates.unique().sort_values()
    rates = pd.DataFrame(
        {
            "bank_code": rng.choice(["FED", "ECB"], len(picked), p=[0.8, 0.2]),
            "change_date": picked.date,
            "rate": rng.choice(np.arange(0, 6, 0.25), len(picked)),
            "previous_rate": np.where(rng.random(len(picked)) < 0.3, rng.choice(np.arange(0, 6, 0.25)), np.nan),
        }
    )

    padded = pd.date_range(start - 5 * step, end + 5 * step, freq=step)
    weekdays = padded[padded.dayofweek < 5]
    spy = weekdays[(weekdays.hour >= 13) & (weekdays.hour <= 19)] if timeframe == "1h" else weekdays
    vix_days = pd.date_range(start - pd.Timedelta(days=60), end + pd.Timedelta(days=5), freq="D")
    leaders = {
        "BTCUSDT": walk(rng, padded[rng.random(len(padded)) < 0.95]),
        "SPY": walk(rng, spy),
        "DXY": walk(rng, weekdays),
        "VIX": walk(rng, vix_days[vix_days.dayofweek < 5]) * 0.2,
    }
    return Scenario(timeframe, step, gaps, opens, calendar, rates, leaders)


def encode(
    s: Scenario,
    calendar: pd.DataFrame,
    rates: pd.DataFrame,
    leaders: dict[str, pd.DataFrame],
    opens: pd.DatetimeIndex | None = None,
) -> np.ndarray:
    return EventEncoder(SETTINGS).encode(
        s.opens if opens is None else opens, s.timeframe, calendar, leaders, rates, symbol="AAPL"
    )


def perturb_future(s: Scenario, t: int, rng: np.random.Generator, move_schedule: bool) -> tuple:
    """Change everything dated at or after the close of candle t; ``move_schedule`` also adds FOMC/CPI dates
    anywhere in the future (otherwise only beyond one countdown period after candle t's open)."""
    cutoff = s.opens[t] + s.step
    cal = s.calendar.copy()
    future = (cal["scheduled_at"] >= cutoff).to_numpy()
    for column in ("actual", "forecast", "previous"):
        cal.loc[future, column] = random_values(rng, int(future.sum()), missing=0.4)
    movable = future & ~cal["event_type"].isin(COUNTDOWN_TYPES).to_numpy()
    if move_schedule:
        movable = future
    n = int(movable.sum())
    cal.loc[movable, "scheduled_at"] = cutoff + pd.to_timedelta(rng.integers(0, 40 * 24, n), unit="h")
    cal.loc[movable, "status"] = rng.choice(["confirmed", "cancelled", "unscheduled"], n)
    cal.loc[movable, "symbol"] = rng.choice(["AAPL", "MSFT"], n)
    cal = cal.drop(index=cal.index[movable & (rng.random(len(cal)) < 0.2)])

    added = random_events(rng, 20, cutoff, pd.Timedelta(days=40), TYPES, s.step)
    if not move_schedule:  # new FOMC/CPI dates only where they cannot be the next one within a period
        horizon = s.opens[t] + pd.Timedelta(days=max(SETTINGS.fomc_period_days, SETTINGS.cpi_period_days))
        countdown = added["event_type"].isin(COUNTDOWN_TYPES)
        added.loc[countdown, "scheduled_at"] = added.loc[countdown, "scheduled_at"].clip(lower=horizon)
    cal = pd.concat([cal, added], ignore_index=True)

    rates = s.rates.copy()
    day_start = pd.to_datetime(rates["change_date"]).dt.tz_localize("UTC")
    later = (day_start >= cutoff).to_numpy()
    rates.loc[later, "rate"] = rng.choice([-5.0, 12.0], int(later.sum()))  # flips the sign of most changes
    first_new_day = cutoff.ceil("D")
    new_days = first_new_day + pd.to_timedelta(rng.choice(30, 3, replace=False), unit="D")
    rates = pd.concat(
        [
            rates[~rates["change_date"].isin(new_days.date)],
            pd.DataFrame(
                {
                    "bank_code": ["FED", "ECB", "FED"],
                    "change_date": new_days.date,
                    "rate": [9.0, -3.0, 0.0],
                    "previous_rate": [np.nan] * 3,
                }
            ),
        ],
        ignore_index=True,
    )

    leaders = {}
    for name, frame in s.leaders.items():
        leader_step = DAY if name == "VIX" or s.timeframe == "1d" else HOUR
        unknown = np.asarray(frame.index + leader_step > s.opens[t])  # not closed by candle t's open
        changed = frame.copy()
        changed.loc[unknown, "close"] *= np.exp(rng.normal(0, 0.2, int(unknown.sum())))
        changed = changed.drop(index=changed.index[unknown & (rng.random(len(changed)) < 0.2)])
        extra = pd.DatetimeIndex([s.opens[t] + leader_step * int(k) for k in rng.integers(1, 100, 10)])
        extra = extra.floor(leader_step)
        extra = extra[~extra.isin(changed.index)].unique()
        changed = pd.concat([changed, pd.DataFrame({"close": rng.uniform(50, 150, len(extra))}, index=extra)])
        leaders[name] = changed.sort_index()
    return cal, rates, leaders


scenarios = st.builds(
    build,
    seed=st.integers(0, 2**32 - 1),
    timeframe=st.sampled_from(["1h", "1d"]),
    gaps=st.sampled_from(["full", "session", "random"]),
)


@settings(max_examples=60, deadline=None)
@given(
    s=scenarios,
    position=st.floats(0, 1),
    channel=st.one_of(st.none(), st.integers(0, ch.IS_RATE_DECISION)),
    seed=st.integers(0, 2**32 - 1),
)
def test_changing_anything_dated_after_candle_t_leaves_row_t_unchanged(
    s: Scenario, position: float, channel: int | None, seed: int
) -> None:
    tensor = encode(s, s.calendar, s.rates, s.leaders)
    # Most examples test a candle where a calendar channel is set, where leakage would most likely show.
    candidates = np.flatnonzero(tensor[:, channel]) if channel is not None else []
    candidates = candidates if len(candidates) else np.arange(len(s.opens))
    t = int(candidates[min(int(position * len(candidates)), len(candidates) - 1)])
    rng = np.random.default_rng(seed)
    before = tensor[t]

    after = encode(s, *perturb_future(s, t, rng, move_schedule=False))[t]
    np.testing.assert_array_equal(after, before)

    # New or moved FOMC/CPI dates may change the countdown (scheduled dates are known in advance), nothing else.
    moved = encode(s, *perturb_future(s, t, rng, move_schedule=True))[t]
    others = [c for c in range(ch.N_CHANNELS) if c not in COUNTDOWN_CHANNELS]
    np.testing.assert_array_equal(moved[others], before[others])


def reference_release_row(opens: pd.DatetimeIndex, step: pd.Timedelta, at: pd.Timestamp) -> int | None:
    """The release candle, by a plain scan: the candle containing ``at``, else the next one after a gap."""
    carry = pd.Timedelta(hours=SETTINGS.release_carry_max_hours)
    for i, start in enumerate(opens):
        if start <= at < start + step:
            return i
        if start > at:
            return i if i > 0 and start - at <= carry else None
    return None


@settings(max_examples=40, deadline=None)
@given(s=scenarios)
def test_flags_and_surprises_land_on_the_release_candle_and_never_before(s: Scenario) -> None:
    tensor = encode(s, s.calendar, s.rates, s.leaders)
    live = s.calendar[s.calendar["status"] != "cancelled"]
    for event_type, channel in ch.FLAG_CHANNELS.items():
        if channel in (ch.IS_RATE_DECISION, ch.IS_EARNINGS):
            continue  # also fed by rate records / filtered by symbol; covered by the hand-made tests
        rows = live[live["event_type"] == event_type]
        expected = {reference_release_row(s.opens, s.step, at) for at in rows["scheduled_at"]} - {None}
        assert set(np.flatnonzero(tensor[:, channel])) == expected, event_type
    for event_type, channel in ch.SURPRISE_CHANNELS.items():
        rows = live[(live["event_type"] == event_type) & live["actual"].notna() & live["forecast"].notna()]
        releases = {reference_release_row(s.opens, s.step, at) for at in rows["scheduled_at"]} - {None}
        shown = set(np.flatnonzero(tensor[:, channel]))
        assert shown <= releases, event_type
        for row in shown:  # released before the candle's close
            assert rows["scheduled_at"].lt(s.opens[row] + s.step).any()
    assert np.all(np.abs(tensor[:, [ch.CPI_SURPRISE_Z, ch.NFP_SURPRISE_Z]]) <= SETTINGS.surprise_clip)


@settings(max_examples=30, deadline=None)
@given(s=scenarios, position=st.floats(0, 0.9))
def test_a_context_window_encodes_like_the_same_rows_of_the_full_history(s: Scenario, position: float) -> None:
    start = int(position * len(s.opens))
    full = encode(s, s.calendar, s.rates, s.leaders)
    window = encode(s, s.calendar, s.rates, s.leaders, opens=s.opens[start:])
    # A release carried over a gap into the window's first candle is only known from the full history.
    first = 0 if s.gaps == "full" else 1
    np.testing.assert_array_equal(window[first:], full[start + first :])
