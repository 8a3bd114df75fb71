"""EventEncoder speed: encode years of hourly candles against a full calendar and four leaders.

    .venv/bin/python bench/events.py [--years 5] [--instruments 23]

Synthetic data (random times and values), sized like the real inputs: one FOMC every ~46 days, monthly
CPI/NFP/GDP/PCE with surprises, quarterly earnings, rate changes of four banks, leaders as the store
holds them. Prints the first encode (prepares the calendar) and the per-instrument time after it (cached).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from candlecast.events import EventEncoder


def synthetic_inputs(years: int) -> tuple[pd.DatetimeIndex, pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    rng = np.random.default_rng(0)
    start = pd.Timestamp("2015-01-01", tz="UTC")
    hours = pd.date_range(start, periods=years * 365 * 24, freq="h")
    end = hours[-1]
    rows = []
    for event_type, every_days in [("fomc", 46), ("cpi", 30), ("nfp", 30), ("gdp", 30), ("pce", 30)]:
        count = int((end - start).days / every_days) + 1
        times = start + pd.to_timedelta(np.arange(count) * every_days, unit="D") + pd.Timedelta(hours=13.5)
        rows.append(pd.DataFrame({"event_type": event_type, "scheduled_at": times,
                                  "actual": rng.normal(0, 1, count), "forecast": rng.normal(0, 1, count),
                                  "previous": rng.normal(0, 1, count)}))  # fmt: skip
    for symbol in ["AAPL", "MSFT", "NVDA", "TSLA"]:
        times = start + pd.to_timedelta(np.arange(0, (end - start).days, 91), unit="D") + pd.Timedelta(hours=20)
        rows.append(pd.DataFrame({"event_type": "earnings", "scheduled_at": times, "symbol": symbol}))
    calendar = pd.concat(rows, ignore_index=True)
    days = pd.date_range(start, end, freq="D")
    picked = np.sort(rng.choice(len(days), 40, replace=False))
    rates = pd.DataFrame({"bank_code": rng.choice(["FED", "ECB", "BOE", "BOJ"], 40),
                          "change_date": days[picked].date, "rate": rng.choice(np.arange(0, 6, 0.25), 40)})  # fmt: skip

    def walk(index: pd.DatetimeIndex) -> pd.DataFrame:
        return pd.DataFrame({"close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index))))}, index=index)

    weekdays = hours[hours.dayofweek < 5]
    leaders = {
        "BTCUSDT": walk(hours),
        "SPY": walk(weekdays[(weekdays.hour >= 14) & (weekdays.hour <= 20)]),
        "DXY": walk(weekdays),
        "VIX": walk(days[days.dayofweek < 5]),
    }
    return hours, calendar, rates, leaders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--instruments", type=int, default=23)
    args = parser.parse_args()
    hours, calendar, rates, leaders = synthetic_inputs(args.years)
    encoder = EventEncoder()
    began = time.perf_counter()
    encoder.encode(hours, "1h", calendar, leaders, rates, symbol="AAPL")
    first = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(args.instruments):
        encoder.encode(hours, "1h", calendar, leaders, rates, symbol="AAPL")
    each = (time.perf_counter() - began) / args.instruments
    print(f"{len(hours):,} hourly candles, {len(calendar):,} calendar rows, {len(rates)} rate records")
    print(f"first encode (prepares the calendar): {first * 1000:.0f} ms")
    print(f"each further instrument (cached calendar): {each * 1000:.0f} ms = {len(hours) / each:,.0f} candles/s")


if __name__ == "__main__":
    main()
