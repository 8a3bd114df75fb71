"""The economic calendar and central-bank rate changes."""

from __future__ import annotations

import io
from datetime import datetime

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import cursor, read_frame

__all__ = ["CALENDAR_COLUMNS", "calendar_between", "central_bank_rates", "upsert_calendar", "upsert_rates"]

CALENDAR_COLUMNS: tuple[str, ...] = (
    "event_type", "title", "country", "symbol", "scheduled_at", "period", "actual", "actual_vintage",
    "forecast", "previous", "importance", "source", "status",
)  # fmt: skip
_KEY = ("event_type", "country", "symbol", "scheduled_at")


def upsert_calendar(conn: Connection, events: pd.DataFrame) -> int:
    """Insert or update events keyed by (event_type, country, symbol, scheduled_at).

    ``events`` has at least event_type and a tz-aware scheduled_at; missing columns take the
    table defaults (country 'US', symbol '', status 'confirmed').
    """
    if events.empty:
        return 0
    frame = events.copy()
    frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True).dt.strftime("%Y-%m-%d %H:%M:%S+00")
    defaults = {"title": "", "country": "US", "symbol": "", "status": "confirmed"}
    for column in CALENDAR_COLUMNS:
        if column not in frame:
            frame[column] = defaults.get(column)
        elif column in defaults:
            frame[column] = frame[column].fillna(defaults[column])
    frame = frame[list(CALENDAR_COLUMNS)]
    body = io.StringIO()
    frame.to_csv(body, header=False, index=False, na_rep="\\N", float_format="%.17g")
    columns = ", ".join(CALENDAR_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in CALENDAR_COLUMNS if c not in _KEY)
    with cursor(conn) as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _stage_calendar "
            "(LIKE economic_calendar INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE _stage_calendar")
        with cur.copy(f"COPY _stage_calendar ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
            copy.write(body.getvalue())
        cur.execute(
            f"INSERT INTO economic_calendar ({columns}) SELECT {columns} FROM _stage_calendar "
            f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET {updates}"
        )
    return len(frame)


def calendar_between(bind: Engine | Connection, start: datetime, end: datetime) -> pd.DataFrame:
    """Events scheduled in [start, end], oldest first (scheduled dates are known in advance)."""
    frame = read_frame(
        bind,
        f"SELECT {', '.join(CALENDAR_COLUMNS)} FROM economic_calendar "
        "WHERE scheduled_at BETWEEN %(start)s AND %(end)s ORDER BY scheduled_at",
        {"start": start, "end": end},
    )
    frame["scheduled_at"] = pd.to_datetime(frame["scheduled_at"], utc=True)
    for column in ("actual", "forecast", "previous"):
        frame[column] = frame[column].astype("float64")
    return frame


def upsert_rates(conn: Connection, rates: pd.DataFrame) -> int:
    """Insert or update central-bank rate changes keyed by (bank_code, change_date)."""
    rows = rates.to_dict("records")
    if not rows:
        return 0
    with cursor(conn) as cur:
        cur.executemany(
            "INSERT INTO central_bank_rates (bank_code, change_date, rate, previous_rate, source) "
            "VALUES (%(bank_code)s, %(change_date)s, %(rate)s, %(previous_rate)s, %(source)s) "
            "ON CONFLICT (bank_code, change_date) DO UPDATE SET rate = EXCLUDED.rate, "
            "previous_rate = EXCLUDED.previous_rate, source = EXCLUDED.source",
            [{"previous_rate": None, "source": None, **{str(k): v for k, v in row.items()}} for row in rows],
        )
    return len(rows)


def central_bank_rates(bind: Engine | Connection, before: datetime | None = None) -> pd.DataFrame:
    """Rate changes, oldest first, optionally only those dated before ``before``."""
    return read_frame(
        bind,
        "SELECT bank_code, change_date, rate, previous_rate, source FROM central_bank_rates "
        "WHERE %(before)s::timestamptz IS NULL OR change_date < %(before)s ORDER BY change_date",
        {"before": before},
    )
