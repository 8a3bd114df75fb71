"""EventEncoder: each channel on hand-made calendars and candles, the masks, and the no-look-ahead rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candlecast.config import LEADERS, EventSettings
from candlecast.events import CHANNEL_NAMES, N_CHANNELS, EventEncoder
from candlecast.events import channels as ch

NY = "America/New_York"


def et(text: str) -> pd.Timestamp:
    """A New York wall-clock time as a UTC instant (DST applied by the tz database)."""
    return pd.Timestamp(text, tz=NY).tz_convert("UTC")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def hours(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(utc(start), utc(end), freq="h")


def days(start: str, end: str) -> pd.DatetimeIndex:
    return pd.date_range(utc(start), utc(end), freq="D")


def calendar(*rows: dict) -> pd.DataFrame:
    """Calendar rows with the store's columns; values not given are missing."""
    frame = pd.DataFrame(list(rows), columns=["event_type", "scheduled_at", "actual", "forecast", "previous"])
    extra = pd.DataFrame(list(rows)).drop(columns=list(frame.columns), errors="ignore")
    frame = pd.concat([frame, extra], axis=1)
    frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True)
    return frame


def encode(timestamps: pd.DatetimeIndex, timeframe: str, cal: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
    leaders = kwargs.pop("leaders", {})
    tensor = EventEncoder(kwargs.pop("settings", None)).encode(timestamps, timeframe, cal, leaders, **kwargs)
    assert tensor.dtype == np.float32 and tensor.shape == (len(timestamps), N_CHANNELS)
    return pd.DataFrame(tensor, index=timestamps, columns=list(CHANNEL_NAMES))


def flagged(frame: pd.DataFrame, channel: str) -> list[pd.Timestamp]:
    return list(frame.index[frame[channel] != 0])


# --- channel table ------------------------------------------------------------------------------------


def test_channel_constants_follow_the_design_table() -> None:
    assert N_CHANNELS == len(CHANNEL_NAMES) == len(set(CHANNEL_NAMES)) == 20
    expected = {
        "IS_FOMC": 0, "IS_CPI": 1, "IS_NFP": 2, "IS_GDP": 3, "IS_PCE": 4, "CPI_SURPRISE_Z": 5,
        "FOMC_HAWKISH_SCORE": 6, "NFP_SURPRISE_Z": 7, "IS_EARNINGS": 8, "IS_RATE_DECISION": 9,
        "DAYS_TO_FOMC_SIN": 10, "DAYS_TO_FOMC_COS": 11, "DAYS_TO_CPI_SIN": 12, "DAYS_TO_CPI_COS": 13,
        "BTC_LOG_RETURN": 14, "SPY_LOG_RETURN": 15, "DXY_LOG_RETURN": 16, "VIX_LEVEL_Z": 17,
        "RESERVED_18": 18, "RESERVED_19": 19,
    }  # fmt: skip
    for constant, index in expected.items():
        assert getattr(ch, constant) == index
        assert CHANNEL_NAMES[index] == constant.lower()


def test_leader_channels_cover_the_configured_leaders() -> None:
    assert {*ch.LEADER_RETURN_CHANNELS, ch.VIX_LEADER} == set(LEADERS)


def test_no_timestamps_give_an_empty_tensor() -> None:
    tensor = EventEncoder().encode(pd.DatetimeIndex([], tz="UTC"), "1h", None, {})
    assert tensor.shape == (0, N_CHANNELS) and tensor.dtype == np.float32


# --- release flags (channels 0-4) --------------------------------------------------------------------


def test_hourly_release_flag_follows_new_york_time_across_the_march_dst_switch() -> None:
    # US clocks moved forward on 2024-03-10: 08:30 ET is 13:30 UTC in February, 12:30 UTC in March.
    ts = hours("2024-02-12", "2024-03-14")
    frame = encode(
        ts,
        "1h",
        calendar(
            {"event_type": "cpi", "scheduled_at": et("2024-02-13 08:30")},
            {"event_type": "cpi", "scheduled_at": et("2024-03-12 08:30")},
        ),
    )
    assert flagged(frame, "is_cpi") == [utc("2024-02-13 13:00"), utc("2024-03-12 12:00")]


def test_hourly_release_flag_follows_new_york_time_across_the_november_dst_switch() -> None:
    # US clocks moved back on 2024-11-03: NFP at 08:30 ET is 12:30 UTC on Nov 1, 13:30 UTC on Dec 6.
    ts = hours("2024-10-30", "2024-12-07")
    frame = encode(
        ts,
        "1h",
        calendar(
            {"event_type": "nfp", "scheduled_at": et("2024-11-01 08:30")},
            {"event_type": "nfp", "scheduled_at": et("2024-12-06 08:30")},
            {"event_type": "fomc", "scheduled_at": et("2024-11-07 14:00")},
        ),
    )
    assert flagged(frame, "is_nfp") == [utc("2024-11-01 12:00"), utc("2024-12-06 13:00")]
    assert flagged(frame, "is_fomc") == [utc("2024-11-07 19:00")]


def test_each_release_type_sets_only_its_own_flag() -> None:
    ts = hours("2024-04-01", "2024-05-01")
    types = {"fomc": "is_fomc", "cpi": "is_cpi", "nfp": "is_nfp", "gdp": "is_gdp", "pce": "is_pce"}
    instants = [et(f"2024-04-{10 + i} 08:30") for i in range(len(types))]
    frame = encode(
        ts,
        "1h",
        calendar(
            *[
                {"event_type": t.upper() if i == 0 else t, "scheduled_at": at}  # event_type is case-insensitive
                for i, (t, at) in enumerate(zip(types, instants, strict=True))
            ]
        ),
    )
    for (_, name), at in zip(types.items(), instants, strict=True):
        assert flagged(frame, name) == [at.floor("h")]
    assert frame.iloc[:, 5:10].eq(0).all().all()


def test_daily_release_flag_is_the_utc_day_of_the_release() -> None:
    ts = days("2024-03-01", "2024-03-31")
    frame = encode(
        ts,
        "1d",
        calendar(
            {"event_type": "cpi", "scheduled_at": et("2024-03-12 08:30")},
            {"event_type": "fomc", "scheduled_at": et("2024-03-20 14:00")},
            # 20:30 in New York is already the next day in UTC.
            {"event_type": "gdp", "scheduled_at": et("2024-03-27 20:30")},
        ),
    )
    assert flagged(frame, "is_cpi") == [utc("2024-03-12")]
    assert flagged(frame, "is_fomc") == [utc("2024-03-20")]
    assert flagged(frame, "is_gdp") == [utc("2024-03-28")]


def test_event_exactly_at_a_candle_boundary_belongs_to_the_candle_it_opens() -> None:
    hourly = encode(
        hours("2024-05-01", "2024-05-02"),
        "1h",
        calendar({"event_type": "pce", "scheduled_at": utc("2024-05-01 13:00")}),
    )
    assert flagged(hourly, "is_pce") == [utc("2024-05-01 13:00")]
    daily = encode(
        days("2024-05-01", "2024-05-05"), "1d", calendar({"event_type": "pce", "scheduled_at": utc("2024-05-03 00:00")})
    )
    assert flagged(daily, "is_pce") == [utc("2024-05-03")]


def test_release_while_market_closed_goes_to_the_next_candle() -> None:
    # An equity-like daily series with no weekend candles; the 2020-03-15 emergency FOMC was a Sunday.
    weekdays = days("2020-03-09", "2020-03-20")
    weekdays = weekdays[weekdays.dayofweek < 5]
    frame = encode(weekdays, "1d", calendar({"event_type": "fomc", "scheduled_at": et("2020-03-15 17:00")}))
    assert flagged(frame, "is_fomc") == [utc("2020-03-16")]
    # Hourly session candles stamped 13:30 UTC onwards: the 08:30 ET CPI (12:30 UTC) lands on 13:30.
    session = pd.DatetimeIndex([utc("2024-06-11 19:30")]).append(
        pd.date_range(utc("2024-06-12 13:30"), periods=7, freq="h")
    )
    frame = encode(session, "1h", calendar({"event_type": "cpi", "scheduled_at": et("2024-06-12 08:30")}))
    assert flagged(frame, "is_cpi") == [utc("2024-06-12 13:30")]


def test_release_is_not_carried_before_the_first_candle_or_across_a_long_gap() -> None:
    ts = pd.DatetimeIndex([utc("2024-01-02"), utc("2024-01-10"), utc("2024-01-11")])
    frame = encode(
        ts,
        "1d",
        calendar(
            {"event_type": "cpi", "scheduled_at": utc("2024-01-01 13:30")},  # before the first candle
            {"event_type": "nfp", "scheduled_at": utc("2024-01-05 13:30")},  # 4.5 days before the next candle
        ),
    )
    assert frame[["is_cpi", "is_nfp"]].eq(0).all().all()


def test_cancelled_event_is_not_flagged() -> None:
    frame = encode(
        hours("2025-10-01", "2025-11-30"),
        "1h",
        calendar(
            {"event_type": "cpi", "scheduled_at": et("2025-11-13 08:30"), "status": "cancelled"},
            {"event_type": "cpi", "scheduled_at": et("2025-10-24 08:30"), "status": "confirmed"},
        ),
    )
    assert flagged(frame, "is_cpi") == [utc("2025-10-24 12:00")]


# --- surprises (channels 5 and 7) ---------------------------------------------------------------------


def monthly_releases(event_type: str, surprises: list[float], start: str = "2022-01-01") -> list[dict]:
    """Releases on the 12th of each month at 08:30 ET with forecast 0.3 and the given surprises."""
    months = pd.date_range(start, periods=len(surprises), freq="MS") + pd.Timedelta(days=11)
    return [
        {"event_type": event_type, "scheduled_at": et(f"{m.date()} 08:30"), "actual": 0.3 + s, "forecast": 0.3}
        for m, s in zip(months, surprises, strict=True)
    ]


def test_cpi_surprise_is_z_scored_by_the_previous_twenty_surprises_on_the_release_candle_only() -> None:
    surprises = list(np.random.default_rng(7).normal(0, 0.1, 26).round(3))
    rows = monthly_releases("cpi", surprises)
    ts = hours("2021-12-01", "2024-04-01")
    frame = encode(ts, "1h", calendar(*rows))
    column = frame["cpi_surprise_z"]
    assert list(column.index[column != 0]) == [row["scheduled_at"].floor("h") for row in rows[5:]]
    for i in range(5, 26):
        history = np.array(surprises[max(0, i - 20) : i])
        expected = np.clip(surprises[i] / history.std(ddof=1), -3, 3)
        assert column[rows[i]["scheduled_at"].floor("h")] == pytest.approx(expected, abs=1e-5)
    assert frame["nfp_surprise_z"].eq(0).all()


def test_surprise_is_clipped_to_three() -> None:
    rows = monthly_releases("nfp", [0.01, -0.01, 0.02, -0.02, 0.01, 5.0, -50.0])
    frame = encode(hours("2021-12-01", "2022-08-01"), "1h", calendar(*rows))
    values = frame.loc[[r["scheduled_at"].floor("h") for r in rows[5:]], "nfp_surprise_z"]
    assert list(values) == [3.0, -3.0]
    assert frame["cpi_surprise_z"].eq(0).all()


def test_surprise_is_zero_without_forecast_or_actual_and_never_uses_them_as_history() -> None:
    rows = monthly_releases("cpi", [0.1, -0.1, 0.2, -0.2, 0.1, 0.3, 0.15, 0.3])
    rows[5]["forecast"] = np.nan  # no consensus: no surprise, and not part of later histories
    rows[6]["actual"] = np.nan
    frame = encode(hours("2021-12-01", "2022-09-01"), "1h", calendar(*rows))
    at = [r["scheduled_at"].floor("h") for r in rows]
    assert frame.loc[at[5], "cpi_surprise_z"] == 0 and frame.loc[at[6], "cpi_surprise_z"] == 0
    assert frame.loc[at[5], "is_cpi"] == 1  # the release itself is still flagged
    history = np.array([0.1, -0.1, 0.2, -0.2, 0.1])
    assert frame.loc[at[7], "cpi_surprise_z"] == pytest.approx(np.clip(0.3 / history.std(ddof=1), -3, 3))


def test_surprise_needs_a_minimum_history_and_ignores_releases_at_the_same_instant() -> None:
    rows = monthly_releases("cpi", [0.1, -0.1, 0.2, -0.2, 0.4])
    twin = dict(rows[-1], actual=0.3 + 0.5, forecast=0.3)  # a second row released at the same instant
    settings = EventSettings(surprise_min_history=4)
    frame = encode(hours("2021-12-01", "2022-06-01"), "1h", calendar(*rows, twin), settings=settings)
    at = rows[-1]["scheduled_at"].floor("h")
    nonzero = frame.index[frame["cpi_surprise_z"] != 0]
    assert list(nonzero) == [at]  # the first four have fewer than four earlier surprises
    # Both same-instant rows are scored against the four earlier ones only; the later row wins the cell.
    earlier = np.array([0.1, -0.1, 0.2, -0.2])
    assert frame.loc[at, "cpi_surprise_z"] == pytest.approx(0.5 / earlier.std(ddof=1), abs=1e-5)


# --- FOMC tone (channel 6) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "previous", "score"),
    [(5.50, 5.25, 1.0), (5.00, 5.25, -1.0), (5.75, 5.25, 1.0), (5.35, 5.25, 0.4), (5.25, 5.25, 0.0)],
)
def test_hawkish_score_is_the_rate_change_in_quarter_points(actual: float, previous: float, score: float) -> None:
    at = et("2023-07-26 14:00")
    frame = encode(
        hours("2023-07-25", "2023-07-28"),
        "1h",
        calendar({"event_type": "fomc", "scheduled_at": at, "actual": actual, "previous": previous}),
    )
    assert frame.loc[at.floor("h"), "fomc_hawkish_score"] == pytest.approx(score)
    assert (frame["fomc_hawkish_score"] != 0).sum() == (score != 0)


def test_hawkish_score_falls_back_to_the_fed_rate_change_on_the_decision_day() -> None:
    decisions = [et("2020-03-03 10:00"), et("2020-03-15 17:00"), et("2020-04-29 14:00")]
    rates = pd.DataFrame(
        {
            "bank_code": ["FED", "FED", "FED", "ECB", "ECB"],
            "change_date": pd.to_datetime(["2019-10-30", "2020-03-03", "2020-03-15", "2019-09-18", "2020-04-29"]).date,
            "rate": [1.75, 1.25, 0.25, -0.5, -0.75],
        }
    )
    frame = encode(
        days("2020-03-01", "2020-05-01"),
        "1d",
        calendar(*[{"event_type": "fomc", "scheduled_at": d} for d in decisions]),
        rates=rates,
    )
    score = frame["fomc_hawkish_score"]
    assert score[utc("2020-03-03")] == -1.0 and score[utc("2020-03-15")] == -1.0
    assert score[utc("2020-04-29")] == 0.0  # the ECB's move is not the Fed's
    assert (score != 0).sum() == 2


# --- earnings and rate decisions (channels 8 and 9) ----------------------------------------------------


def test_earnings_flag_only_for_the_encoded_symbol() -> None:
    cal = calendar(
        {"event_type": "earnings", "scheduled_at": et("2024-05-02 16:30"), "symbol": "AAPL"},
        {"event_type": "earnings", "scheduled_at": et("2024-04-25 16:05"), "symbol": "msft"},
    )
    ts = days("2024-04-20", "2024-05-05")
    assert flagged(encode(ts, "1d", cal, symbol="AAPL"), "is_earnings") == [utc("2024-05-02")]
    assert flagged(encode(ts, "1d", cal, symbol="MSFT"), "is_earnings") == [utc("2024-04-25")]
    assert flagged(encode(ts, "1d", cal), "is_earnings") == []


def test_rate_decision_flags_calendar_decisions_and_rate_changes_by_the_end_of_their_day() -> None:
    cal = calendar({"event_type": "rate_decision", "scheduled_at": utc("2024-06-06 12:15"), "country": "EU"})
    rates = pd.DataFrame(
        {
            "bank_code": ["BOE", "BOE", "BOE", "BOC"],
            "change_date": ["2024-07-01", "2024-08-01", "2024-09-19", "2024-06-05"],
            "rate": [5.25, 5.00, 5.00, 4.75],
            "previous_rate": [np.nan, np.nan, np.nan, 5.00],
        }
    )
    hourly = encode(hours("2024-06-01", "2024-09-30"), "1h", cal, rates=rates)
    # BoE: the first record has no previous rate, Sep 19 is unchanged; only the Aug 1 cut is a change.
    assert flagged(hourly, "is_rate_decision") == [
        utc("2024-06-05 23:00"),
        utc("2024-06-06 12:00"),
        utc("2024-08-01 23:00"),
    ]
    daily = encode(days("2024-06-01", "2024-09-30"), "1d", cal, rates=rates)
    assert flagged(daily, "is_rate_decision") == [utc("2024-06-05"), utc("2024-06-06"), utc("2024-08-01")]


# --- countdowns (channels 10-13) -----------------------------------------------------------------------


def test_days_to_fomc_is_a_cyclical_encoding_of_the_time_until_the_next_scheduled_meeting() -> None:
    meetings = [et("2024-01-31 14:00"), et("2024-03-20 14:00")]
    ts = days("2024-01-01", "2024-04-01")
    frame = encode(ts, "1d", calendar(*[{"event_type": "fomc", "scheduled_at": m} for m in meetings]))
    period = EventSettings().fomc_period_days
    for day in [utc("2024-01-01"), utc("2024-01-31"), utc("2024-02-01"), utc("2024-03-20")]:
        upcoming = min(m for m in meetings if m >= day)
        phase = 2 * np.pi * ((upcoming - day) / pd.Timedelta(days=1)) / period
        assert frame.loc[day, "days_to_fomc_sin"] == pytest.approx(np.sin(phase), abs=1e-6)
        assert frame.loc[day, "days_to_fomc_cos"] == pytest.approx(np.cos(phase), abs=1e-6)
    # After the last scheduled meeting nothing is known: (0, 0), off the unit circle.
    assert frame.loc[utc("2024-03-21") :, ["days_to_fomc_sin", "days_to_fomc_cos"]].eq(0).all().all()
    assert frame[["days_to_cpi_sin", "days_to_cpi_cos"]].eq(0).all().all()


def test_days_to_cpi_is_zero_beyond_one_period_and_ignores_unscheduled_events() -> None:
    cal = calendar(
        {"event_type": "cpi", "scheduled_at": et("2024-06-12 08:30")},
        {"event_type": "fomc", "scheduled_at": et("2024-05-10 10:00"), "status": "unscheduled"},
    )
    frame = encode(days("2024-04-01", "2024-06-12"), "1d", cal)
    period = EventSettings().cpi_period_days
    far = frame.index < utc("2024-06-12 12:30") - pd.Timedelta(days=period)
    assert frame.loc[far, ["days_to_cpi_sin", "days_to_cpi_cos"]].eq(0).all().all()
    near = frame.loc[~far, ["days_to_cpi_sin", "days_to_cpi_cos"]]
    assert np.allclose(np.hypot(near.iloc[:, 0], near.iloc[:, 1]), 1.0)
    # The emergency meeting is flagged when it happens, but was never counted down to.
    assert flagged(frame, "is_fomc") == [utc("2024-05-10")]
    assert frame[["days_to_fomc_sin", "days_to_fomc_cos"]].eq(0).all().all()


# --- leaders (channels 14-17) ----------------------------------------------------------------------------


def closes(index: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))}, index=index)


def test_btc_return_is_the_prior_candle_return_without_look_ahead() -> None:
    ts = hours("2024-01-01", "2024-01-03")
    btc = closes(ts, 1).reset_index(names="ts")  # the timestamp may be a column as well as the index
    frame = encode(ts, "1h", leaders={"BTCUSDT": btc})
    expected = np.log(btc["close"] / btc["close"].shift(1)).shift(1).fillna(0).to_numpy()
    assert np.allclose(frame["btc_log_return"], expected, atol=1e-7)
    assert frame["btc_log_return"].iloc[:2].eq(0).all()


def test_spy_return_is_masked_when_its_market_is_closed() -> None:
    # SPY hourly bars stamped 13:30-19:30 UTC on weekdays (summer); the target trades around the clock.
    ts = hours("2024-06-06", "2024-06-11 23:00")  # Thursday to Tuesday
    session = pd.DatetimeIndex(
        [
            d + pd.Timedelta(hours=13.5 + h)
            for d in days("2024-06-06", "2024-06-11")
            if d.dayofweek < 5
            for h in range(7)
        ]
    )
    spy = closes(session, 2)
    frame = encode(ts, "1h", leaders={"SPY": spy})
    column = frame["spy_log_return"]
    # Each SPY bar appears once, in the first row opening after its close (bar 13:30 closes 14:30 -> row 15:00).
    returns = np.log(spy["close"] / spy["close"].shift(1)).iloc[1:]
    shown = column[column != 0]
    assert list(shown.index) == [t + pd.Timedelta(hours=1.5) for t in returns.index]
    assert np.allclose(shown.to_numpy(), returns.to_numpy(), atol=1e-7)
    # Overnight, the weekend and the first row of a session (no bar closed yet) are 0, never forward filled.
    assert column[utc("2024-06-08 00:00") : utc("2024-06-10 14:00")].eq(0).all()
    assert column[utc("2024-06-07 21:00")] != 0 and column[utc("2024-06-07 22:00")] == 0


def test_daily_leader_returns_on_weekends_and_dxy_channel() -> None:
    ts = days("2024-06-03", "2024-06-12")  # crypto daily target: every day
    weekdays = ts[ts.dayofweek < 5]
    spy, dxy = closes(weekdays, 3), closes(weekdays, 4)
    frame = encode(ts, "1d", leaders={"SPY": spy, "DXY": dxy})
    friday, monday = utc("2024-06-07"), utc("2024-06-10")
    # Saturday's row shows Friday's return; Sunday and Monday rows have no SPY bar closed the day before.
    assert frame.loc[utc("2024-06-08"), "spy_log_return"] == pytest.approx(
        np.log(spy.loc[friday, "close"] / spy.loc[utc("2024-06-06"), "close"]), abs=1e-7
    )
    assert frame.loc[utc("2024-06-09"), "spy_log_return"] == 0 and frame.loc[monday, "spy_log_return"] == 0
    # Tuesday's row shows Monday's return over the weekend (Friday close -> Monday close).
    assert frame.loc[utc("2024-06-11"), "dxy_log_return"] == pytest.approx(
        np.log(dxy.loc[monday, "close"] / dxy.loc[friday, "close"]), abs=1e-7
    )


def test_a_leader_with_no_candle_in_the_window_gives_zero_channels() -> None:
    # e.g. a replay after the leader's data ends: the leader frames read for the window are empty
    ts = days("2024-06-03", "2024-06-12")
    empty = closes(ts, 3).iloc[:0]
    frame = encode(ts, "1d", leaders={"SPY": empty, "VIX": empty, "DXY": closes(ts[ts.dayofweek < 5], 4)})
    assert (frame["spy_log_return"] == 0).all() and (frame["vix_level_z"] == 0).all()
    assert (frame["dxy_log_return"] != 0).any()


def test_vix_z_uses_daily_closes_strictly_before_the_hourly_candle() -> None:
    vix_days = days("2024-01-01", "2024-03-31")
    vix_days = vix_days[vix_days.dayofweek < 5]
    vix = pd.DataFrame({"close": 15 + 3 * np.sin(np.arange(len(vix_days)) / 5.0)}, index=vix_days)
    settings = EventSettings(vix_window=30, vix_min_history=10)
    ts = hours("2024-03-01", "2024-03-12")
    frame = encode(ts, "1h", leaders={"VIX": vix}, settings=settings)

    def z_of(day: str) -> float:
        window = vix.loc[: utc(day), "close"].iloc[-30:]
        return float((window.iloc[-1] - window.mean()) / window.std(ddof=1))

    # On Friday 2024-03-08 every hour sees Thursday's close (Friday's closes at Saturday 00:00).
    assert frame.loc[utc("2024-03-08 00:00") : utc("2024-03-08 23:00"), "vix_level_z"].nunique() == 1
    assert frame.loc[utc("2024-03-08 15:00"), "vix_level_z"] == pytest.approx(z_of("2024-03-07"), abs=1e-5)
    # Saturday and Sunday still see Friday's close: a level, not a return, within the staleness limit.
    assert frame.loc[utc("2024-03-10 12:00"), "vix_level_z"] == pytest.approx(z_of("2024-03-08"), abs=1e-5)
    # Too little history or a stale close gives 0.
    early = encode(hours("2024-01-03", "2024-01-05"), "1h", leaders={"VIX": vix}, settings=settings)
    assert early["vix_level_z"].eq(0).all()
    stale = encode(hours("2024-04-06", "2024-04-08"), "1h", leaders={"VIX": vix}, settings=settings)
    assert stale["vix_level_z"].eq(0).all()


def test_reserved_channels_are_zero() -> None:
    ts = hours("2024-03-01", "2024-03-05")
    frame = encode(
        ts,
        "1h",
        calendar({"event_type": "fomc", "scheduled_at": et("2024-03-04 14:00")}),
        leaders={"BTCUSDT": closes(ts, 5)},
    )
    assert frame[["reserved_18", "reserved_19"]].eq(0).all().all()


# --- input errors and the cache ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamps": pd.date_range("2024-01-01", periods=3, freq="h")}, "timestamps must be timezone-aware"),
        ({"timestamps": hours("2024-01-01", "2024-01-02")[::-1]}, "strictly increasing"),
        ({"timeframe": "5m"}, "timeframe"),
        ({"calendar": pd.DataFrame({"event_type": ["cpi"]})}, "scheduled_at"),
        (
            {"calendar": pd.DataFrame({"event_type": ["cpi"], "scheduled_at": [pd.Timestamp("2024-01-01")]})},
            "calendar.scheduled_at must be timezone-aware",
        ),
        (
            {"calendar": pd.DataFrame({"event_type": ["cpi"], "scheduled_at": [utc("2024-01-01")], "actual": ["hot"]})},
            "calendar.actual",
        ),
        ({"leaders": {"BTCUSD": pd.DataFrame({"close": [1.0]}, index=[utc("2024-01-01")])}}, "BTCUSD"),
        ({"leaders": {"SPY": pd.DataFrame({"price": [1.0]}, index=[utc("2024-01-01")])}}, "'close'"),
        ({"rates": pd.DataFrame({"bank_code": ["FED"], "rate": [5.0]})}, "change_date"),
    ],
)
def test_bad_input_is_rejected_naming_the_field(kwargs: dict, message: str) -> None:
    arguments = {"timestamps": hours("2024-01-01", "2024-01-02"), "timeframe": "1h", "calendar": None,
                 "leaders": {}, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        EventEncoder().encode(**arguments)


def test_daily_target_rejects_hourly_leaders() -> None:
    btc = closes(hours("2024-01-01", "2024-01-03"), 6)
    with pytest.raises(ValueError, match="daily target needs daily leaders"):
        EventEncoder().encode(days("2024-01-01", "2024-01-03"), "1d", None, {"BTCUSDT": btc})


def test_cache_serves_repeated_calendars_and_never_a_stale_one() -> None:
    encoder = EventEncoder()
    ts = hours("2024-03-01", "2024-03-20")
    cal = calendar(*monthly_releases("cpi", [0.1, -0.1, 0.2, -0.2, 0.1, 0.3], start="2023-10-01"))
    first = encoder.encode(ts, "1h", cal, {})
    assert len(encoder._cache) == 1
    assert np.array_equal(encoder.encode(ts, "1h", cal.copy(), {}), first)
    assert len(encoder._cache) == 1
    changed = cal.copy()
    changed.loc[changed.index[-1], "actual"] = 0.3 - 0.3
    second = encoder.encode(ts, "1h", changed, {})
    assert len(encoder._cache) == 2
    at = ts.get_loc(changed["scheduled_at"].iloc[-1].floor("h"))
    assert first[at, ch.CPI_SURPRISE_Z] > 0 > second[at, ch.CPI_SURPRISE_Z]


def test_leader_timeframe_can_be_given_for_daily_candles_not_stamped_at_midnight() -> None:
    stamps = days("2024-01-01", "2024-03-01") + pd.Timedelta(hours=5)
    vix = pd.DataFrame({"close": np.linspace(12, 30, len(stamps)) ** 1.5}, index=stamps)
    ts = hours("2024-02-20", "2024-02-22")
    settings = EventSettings(vix_window=20, vix_min_history=5)
    tensor = EventEncoder(settings).encode(ts, "1h", None, {"VIX": vix}, leader_timeframes={"VIX": "1d"})
    column = pd.Series(tensor[:, ch.VIX_LEVEL_Z], index=ts)
    # The bar stamped Feb 20 05:00 closes Feb 21 05:00: hours before that still see the Feb 19 bar.
    assert column[utc("2024-02-21 04:00")] == column[utc("2024-02-20 05:00")]
    assert column[utc("2024-02-21 05:00")] != column[utc("2024-02-21 04:00")]
    # Without the hint, stamps a day apart are read as daily too; read as hourly they would leak.
    inferred = EventEncoder(settings).encode(ts, "1h", None, {"VIX": vix})[:, ch.VIX_LEVEL_Z]
    np.testing.assert_array_equal(inferred, column.to_numpy())
    as_hourly = EventEncoder(settings).encode(ts, "1h", None, {"VIX": vix}, leader_timeframes={"VIX": "1h"})
    assert as_hourly[ts.get_loc(utc("2024-02-20 06:00")), ch.VIX_LEVEL_Z] != column[utc("2024-02-20 06:00")]
