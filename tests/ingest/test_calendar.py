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


def test_rate_changes_load_and_a_bad_file_is_refused_naming_its_rows(engine: Engine, tmp_path: Path) -> None:
    from candlecast.ingest.calendar import ingest_rates
    from candlecast.store.calendar import central_bank_rates

    good = tmp_path / "rates.csv"
    pd.DataFrame({"bank_code": ["fed", "FED"], "change_date": ["2019-07-31", "2019-09-18"], "rate": [2.25, 2.0],
                  "previous_rate": [2.5, None]}).to_csv(good, index=False)  # fmt: skip
    assert ingest_rates(engine, good).written == 2
    ingest_rates(engine, good)  # idempotent
    rates = central_bank_rates(engine)
    assert list(rates["bank_code"]) == ["FED", "FED"] and list(rates["rate"]) == [2.25, 2.0]
    assert rates["previous_rate"].iloc[0] == 2.5 and pd.isna(rates["previous_rate"].iloc[1])

    bad = tmp_path / "bad.csv"
    pd.DataFrame({"bank_code": ["ECB", "", "ECB"], "change_date": ["2019-09-12", "2019-09-12", "someday"],
                  "rate": ["-0.5", "x", "0"]}).to_csv(bad, index=False)  # fmt: skip
    with pytest.raises(IngestError) as info:
        ingest_rates(engine, bad)
    assert "row 2: bank_code missing; rate missing or not a number" in str(info.value)
    assert "row 3: change_date missing or unparseable" in str(info.value)
    assert len(central_bank_rates(engine)) == 2
