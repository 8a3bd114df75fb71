from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from candlecast.ingest.calendar import ingest_calendar
from candlecast.ingest.candles import IngestError
from candlecast.store.calendar import calendar_between


def test_calendar_loads_idempotently_in_utc(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "cal.csv"
    pd.DataFrame({
        "event_type": ["FOMC", "cpi"],
        "scheduled_at": ["2024-03-20T14:00:00-04:00", "2024-03-12 12:30"],
        "actual": [None, 3.2], "status": ["confirmed", "estimated"],
    }).to_csv(path, index=False)  # fmt: skip
    assert ingest_calendar(engine, path).written == 2
    ingest_calendar(engine, path)
    events = calendar_between(engine, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"))
    assert list(events["event_type"]) == ["cpi", "fomc"]
    assert events["scheduled_at"].iloc[1] == pd.Timestamp("2024-03-20 18:00", tz="UTC")


def test_calendar_with_bad_rows_is_refused_whole(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "cal.csv"
    pd.DataFrame({"event_type": ["cpi", "", "nfp"], "scheduled_at": ["2024-01-11 13:30", "2024-02-01", "soon"],
                  "actual": [1, 2, "x"]}).to_csv(path, index=False)  # fmt: skip
    with pytest.raises(IngestError) as info:
        ingest_calendar(engine, path)
    assert "row 2: event_type missing" in str(info.value)
    assert "row 3: scheduled_at missing or unparseable; actual is not a number" in str(info.value)
    events = calendar_between(engine, pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2030-01-01", tz="UTC"))
    assert events.empty
