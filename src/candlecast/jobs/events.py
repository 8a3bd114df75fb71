"""What the batch job feeds the event encoder: the calendar, rate changes and leader candles as of a slot.

Everything is read once per batch run and shared by all instruments (the encoder caches the prepared
calendar by content). As a second guard against look-ahead, on top of the encoder's own rules, calendar
rows scheduled after the slot lose their actual/forecast/previous values (their dates are known in advance
and stay), rate changes are read only before the slot, and leader candles only when closed by the slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.events import EventEncoder
from candlecast.models.base import SeriesInput
from candlecast.store.calendar import calendar_between, central_bank_rates
from candlecast.store.candles import latest_candles_many

__all__ = ["EventInputs"]

# Surprise z-scores need the previous 20 releases of a monthly series; scheduled dates are read this far ahead.
_CALENDAR_HISTORY = timedelta(days=3 * 365)
_CALENDAR_AHEAD = timedelta(days=180)


@dataclass
class EventInputs:
    encoder: EventEncoder
    timeframe: str
    calendar: pd.DataFrame
    rates: pd.DataFrame
    leaders: dict[str, pd.DataFrame]
    leader_timeframes: dict[str, str]

    @classmethod
    def read(
        cls, settings: Settings, engine: Engine, timeframe: str, slot: datetime, series: Sequence[SeriesInput]
    ) -> EventInputs:
        first = min((s.timestamps[0] for s in series), default=pd.Timestamp(slot)).to_pydatetime()
        calendar = calendar_between(engine, first - _CALENDAR_HISTORY, slot + _CALENDAR_AHEAD)
        future = calendar["scheduled_at"] > pd.Timestamp(slot)
        calendar.loc[future, ["actual", "forecast", "previous"]] = np.nan
        # an unscheduled meeting after the slot was not known at the slot: it must not show in horizon rows
        calendar = calendar[~(future & (calendar["status"] == "unscheduled"))].reset_index(drop=True)
        rates = central_bank_rates(engine, before=slot)
        # enough leader history for the VIX z-score window before the oldest context candle
        longest = max((len(s) for s in series), default=1) + settings.events.vix_window + 2
        leaders = latest_candles_many(engine, settings.leaders, timeframe, longest, slot)
        leader_timeframes = dict.fromkeys(leaders, timeframe)
        if timeframe == "1h":  # a leader with only daily candles (VIX, DXY in the sample data) is used daily
            missing = [name for name in settings.leaders if name not in leaders]
            daily = latest_candles_many(engine, missing, "1d", longest // 24 + longest, slot) if missing else {}
            leaders.update(daily)
            leader_timeframes.update(dict.fromkeys(daily, "1d"))
        return cls(EventEncoder(settings.events), timeframe, calendar, rates, leaders, leader_timeframes)

    def cutoffs(self, slot: datetime) -> dict[str, object]:
        """The newest data each part of the event tensor could use at ``slot`` (ISO times, None when there is
        none): each leader's last candle (and its timeframe), the calendar's last event with its values known
        (scheduled by the slot) and the last rate change."""
        known = self.calendar["scheduled_at"][self.calendar["scheduled_at"] <= pd.Timestamp(slot)]
        return {
            "leaders": {
                name: {"last_candle": _iso(frame["ts"].iloc[-1]) if len(frame) else None,
                       "timeframe": self.leader_timeframes.get(name, self.timeframe)}
                for name, frame in sorted(self.leaders.items())
            },
            "calendar": _iso(known.iloc[-1]) if len(known) else None,
            "rates": _iso(self.rates["change_date"].iloc[-1]) if len(self.rates) else None,
        }  # fmt: skip

    def encode(self, series: SeriesInput, horizon: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The event rows of one instrument's context (T, 20) and of its next ``horizon`` candles (H, 20).

        Horizon rows hold only what was known at the slot: scheduled releases and meetings and the countdowns
        to them (actual values after the slot are blanked above; leader returns of candles not yet closed are 0).
        """
        timestamps = (
            pd.DatetimeIndex(series.timestamps.append(series.target_timestamps(horizon)))
            if horizon
            else series.timestamps
        )
        rows = self.encoder.encode(
            timestamps,
            self.timeframe,
            self.calendar,
            self.leaders,
            self.rates,
            symbol=series.symbol,
            leader_timeframes=self.leader_timeframes,
        )
        return rows[: len(series)], rows[len(series) :]


def _iso(value: object) -> str:
    return pd.Timestamp(value).isoformat()  # type: ignore[arg-type]
