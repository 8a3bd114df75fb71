"""Monthly partitions: naming, months across the year end, idempotent creation (store/partitions.py).

Rows that reach the default partition and their move are tested with the migration (test_migration_0012.py)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from candlecast.store.partitions import ensure_partitions, maintain_partitions, month_of, partition_name, partitions


def test_month_of_is_the_utc_month() -> None:
    # 00:30 on 1 January in UTC+2 is still December in UTC
    assert month_of(datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == date(2024, 12, 1)
    assert month_of(datetime(2025, 1, 31, 23, 59, tzinfo=UTC)) == date(2025, 1, 1)
    assert partition_name("ml_predictions", date(2025, 3, 1)) == "ml_predictions_p202503"


def test_maintenance_creates_this_and_next_month_across_the_year_end_once(engine: Engine) -> None:
    first = maintain_partitions(engine, now=datetime(2031, 12, 15, tzinfo=UTC))
    assert sorted(first.created) == [
        "ml_predictions_p203112", "ml_predictions_p203201", "signal_evaluations_p203112", "signal_evaluations_p203201",
    ]  # fmt: skip
    assert maintain_partitions(engine, now=datetime(2031, 12, 20, tzinfo=UTC)).created == []
    names = partitions(engine, "signal_evaluations")
    assert names[-1] == "signal_evaluations_default"
    assert {"signal_evaluations_p203112", "signal_evaluations_p203201"} <= set(names)


def test_a_writer_creates_missing_months_once_and_only_for_known_tables(engine: Engine) -> None:
    months = [date(2032, 5, 1), date(2032, 6, 1), date(2032, 5, 1)]
    with engine.begin() as conn:
        assert ensure_partitions(conn, "ml_predictions", months) == ["ml_predictions_p203205", "ml_predictions_p203206"]
    with engine.begin() as conn:
        assert ensure_partitions(conn, "ml_predictions", months) == []
    with pytest.raises(ValueError, match="table must be one of"), engine.begin() as conn:
        ensure_partitions(conn, "ohlcv_1h", months)
