"""Reading and validating economic-calendar and central-bank rate files (CSV or Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.ingest.candles import IngestError, IngestResult, RowError, format_errors, parse_timestamps
from candlecast.store.calendar import CALENDAR_COLUMNS, upsert_calendar, upsert_rates

__all__ = ["ingest_calendar", "ingest_rates", "read_calendar_file", "read_rates_file"]

_NUMERIC = ("actual", "forecast", "previous")
_STATUSES = {"confirmed", "estimated", "unscheduled", "cancelled", "postponed"}
_VINTAGES = {"revised", "first_print"}


def read_calendar_file(path: Path, timezone: str = "UTC") -> tuple[pd.DataFrame, list[RowError]]:
    """Read events and check them; returns the valid events and the row errors."""
    raw = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if "scheduled_at_utc" in raw and "scheduled_at" not in raw:
        raw = raw.rename(columns={"scheduled_at_utc": "scheduled_at"})
    missing = [c for c in ("event_type", "scheduled_at") if c not in raw]
    if missing:
        raise IngestError(f"{path}: missing column(s) {missing}; found {list(raw.columns)}")
    frame = raw[[c for c in CALENDAR_COLUMNS if c in raw]].copy()
    frame["scheduled_at"] = parse_timestamps(frame["scheduled_at"], timezone)
    frame["event_type"] = frame["event_type"].astype("string").str.strip().str.lower()

    reasons = pd.Series("", index=frame.index)

    def flag(mask: pd.Series, reason: str) -> None:
        reasons.loc[mask.fillna(False).astype(bool)] += reason + "; "

    flag(frame["event_type"].isna() | (frame["event_type"] == ""), "event_type missing")
    flag(frame["scheduled_at"].isna(), "scheduled_at missing or unparseable")
    for column in _NUMERIC:
        if column in frame:
            numbers = pd.to_numeric(frame[column], errors="coerce")
            flag(frame[column].notna() & numbers.isna(), f"{column} is not a number")
            flag(pd.Series(np.isinf(numbers.to_numpy(dtype="float64")), index=frame.index), f"{column} is infinite")
            frame[column] = numbers
    if "status" in frame:
        flag(frame["status"].notna() & ~frame["status"].isin(_STATUSES), f"status must be one of {sorted(_STATUSES)}")
    if "actual_vintage" in frame:
        flag(
            frame["actual_vintage"].notna() & ~frame["actual_vintage"].isin(_VINTAGES),
            f"actual_vintage must be one of {sorted(_VINTAGES)}",
        )
    bad = reasons != ""
    errors = [RowError(int(i) + 1, reasons[i].rstrip("; ")) for i in frame.index[bad]]
    return frame[~bad].reset_index(drop=True), errors


def ingest_calendar(engine: Engine, path: Path, *, skip_invalid: bool = False, timezone: str = "UTC") -> IngestResult:
    """Load a calendar file in one transaction; refuses the whole file on any bad row unless skipping."""
    events, errors = read_calendar_file(path, timezone)
    if errors and not skip_invalid:
        raise IngestError(format_errors(path, errors))
    with engine.begin() as conn:
        written = upsert_calendar(conn, events)
    return IngestResult(path, "", "", written, errors)


def read_rates_file(path: Path) -> tuple[pd.DataFrame, list[RowError]]:
    """Central-bank rate changes: ``bank_code, change_date, rate`` (+ optional ``previous_rate, source``)."""
    raw = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("bank_code", "change_date", "rate") if c not in raw]
    if missing:
        raise IngestError(f"{path}: missing column(s) {missing}; found {list(raw.columns)}")
    frame = raw[[c for c in ("bank_code", "change_date", "rate", "previous_rate", "source") if c in raw]].copy()
    reasons = pd.Series("", index=frame.index)

    def flag(mask: pd.Series, reason: str) -> None:
        reasons.loc[mask.fillna(False).astype(bool)] += reason + "; "

    frame["bank_code"] = frame["bank_code"].astype("string").str.strip().str.upper()
    flag(frame["bank_code"].isna() | (frame["bank_code"] == ""), "bank_code missing")
    dates = pd.to_datetime(frame["change_date"], errors="coerce", format="mixed")
    flag(dates.isna(), "change_date missing or unparseable")
    frame["change_date"] = dates.dt.date
    rate = pd.to_numeric(frame["rate"], errors="coerce")
    flag(~np.isfinite(rate), "rate missing or not a number")
    frame["rate"] = rate
    if "previous_rate" in frame:
        previous = pd.to_numeric(frame["previous_rate"], errors="coerce")
        flag(frame["previous_rate"].notna() & ~np.isfinite(previous), "previous_rate is not a number")
        frame["previous_rate"] = previous
    flag(frame.duplicated(["bank_code", "change_date"], keep=False), "the same bank and date twice")
    bad = reasons != ""
    errors = [RowError(int(i) + 1, reasons[i].rstrip("; ")) for i in frame.index[bad]]
    clean = frame[~bad].reset_index(drop=True)
    return clean.astype(object).where(clean.notna(), None), errors  # type: ignore[call-overload]  # None is a valid fill


def ingest_rates(engine: Engine, path: Path, *, skip_invalid: bool = False) -> IngestResult:
    """Load central-bank rate changes in one transaction; a file with bad rows writes nothing unless skipping."""
    rates, errors = read_rates_file(path)
    if errors and not skip_invalid:
        raise IngestError(format_errors(path, errors))
    with engine.begin() as conn:
        written = upsert_rates(conn, rates)
    return IngestResult(path, "", "", written, errors)
