"""Migration 0014 (``path_performance``, the stored summary of graded touch questions): down and up again on a
database holding grades and their summary."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from candlecast.jobs.touches import refresh_path_performance
from candlecast.store import create_engine_for, upgrade
from candlecast.store.migrate import current_revision, downgrade, head_revision
from candlecast.store.path_evaluations import path_evaluations_frame, path_performance

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_downgrade_drops_the_summary_keeps_the_grades_and_upgrade_brings_it_back_empty(
    new_database: Callable[[], str],
) -> None:
    engine = create_engine_for(new_database())
    try:
        with engine.begin() as conn:
            for pid in range(1, 41):
                conn.execute(
                    sa.text(
                        "INSERT INTO path_evaluations (prediction_id, k, symbol, timeframe, model_name, as_of, horizon,"
                        " level, side, p_touch, p_touch_rw, paths, touched, uses) VALUES (:pid, 1, :symbol, '1d',"
                        " 'garch', :as_of, 5, 101, 'above', :p, 0.3, 32, :touched, 'close')"
                    ),
                    {"pid": pid, "symbol": "SPY" if pid % 2 else "QQQ", "as_of": T0 + timedelta(days=pid),
                     "p": (pid % 8) / 8, "touched": pid % 3 == 0},
                )  # fmt: skip
        assert refresh_path_performance(engine) == 2 * 3  # 2 windows x (all, SPY, QQQ)
        grades = path_evaluations_frame(engine)

        downgrade(engine, "0013")
        assert current_revision(engine) == "0013"
        assert not sa.inspect(engine).has_table("path_performance")
        assert path_evaluations_frame(engine).equals(grades)
        with pytest.raises(psycopg.errors.UndefinedTable, match="path_performance"):
            path_performance(engine)

        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert path_performance(engine) == []  # empty until the next refresh
        assert refresh_path_performance(engine) == 6
        [row] = path_performance(engine, symbol="SPY")
        assert (row.scope, row.model_name, row.timeframe) == ("SPY", "garch", "1d")
        assert (row.forecasts, row.questions) == (20, 20)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # a window the table does not know
            conn.execute(sa.text("UPDATE path_performance SET window_name = 'forever'"))
    finally:
        engine.dispose()
