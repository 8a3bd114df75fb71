"""Migration 0015 (the served coverage's 90% interval in ``signal_performance``): down and up again on a database
holding scores, their performance rows and incremental summaries; the refresh after the upgrade is a full one."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tests.store.test_migration_0012 import seed_scored_history

from candlecast.jobs.scoring import refresh_performance
from candlecast.store import create_engine_for, upgrade
from candlecast.store.migrate import current_revision, downgrade, head_revision
from candlecast.store.performance import performance

NEW = {"coverage_low", "coverage_high"}


def _columns(engine: Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("signal_performance")}


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _intervals(engine: Engine) -> dict[tuple, tuple[float | None, float | None]]:
    rows = performance(engine, window=None, step=None)
    return {(r.symbol, r.model_name, r.window_name, r.step): (r.coverage_low, r.coverage_high) for r in rows}


def test_downgrade_drops_the_interval_and_upgrade_makes_the_next_refresh_a_full_one(
    new_database: Callable[[], str],
) -> None:
    engine = create_engine_for(new_database())
    try:
        with engine.begin() as conn:
            seed_scored_history(conn)
            conn.execute(sa.text(  # some steps outside the band, in runs
                "UPDATE signal_evaluations SET in_band = (prediction_id / 4) % 3 <> 0 OR step = 2"
            ))  # fmt: skip
        refresh_performance(engine, "1h")
        computed = _intervals(engine)
        assert computed and all(low is not None and high is not None for low, high in computed.values())
        assert any(high - low > 0.05 for low, high in computed.values())  # type: ignore[operator]
        n_rows = _count(engine, "signal_performance")

        downgrade(engine, "0014")
        assert current_revision(engine) == "0014"
        assert "coverage" in _columns(engine) and not NEW & _columns(engine)
        assert _count(engine, "signal_performance") == n_rows  # the rows stay, without the interval
        assert _count(engine, "performance_summaries") == _count(engine, "performance_state") == 0
        with pytest.raises(psycopg.errors.UndefinedColumn, match="coverage_low"):
            performance(engine)

        # what the 0014 code then stores: its own summaries (no in-band series) and its refresh state
        old = io.BytesIO()
        np.savez(old, keys=np.zeros(1, dtype=np.int64), scalars=np.zeros((1, 19)), series=np.zeros((1, 3)))
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO performance_state (timeframe, refreshed_from) VALUES ('1h', now())"))
            conn.execute(
                sa.text(
                    "INSERT INTO performance_summaries (timeframe, symbol, model_name, through, state) "
                    "VALUES ('1h', 'BTCUSDT', 'm', '2026-09-01Z', :state)"
                ),
                {"state": old.getvalue()},
            )

        upgrade(engine)
        assert current_revision(engine) == head_revision()  # 0015 or later
        assert NEW <= _columns(engine)
        assert set(_intervals(engine).values()) == {(None, None)}  # until the next refresh
        assert _count(engine, "performance_summaries") == _count(engine, "performance_state") == 0
        refresh_performance(engine, "1h")  # no change logged, yet a full refresh: every row gets its interval
        again = _intervals(engine)
        assert set(again) == set(computed)
        for key, (low, high) in computed.items():
            assert again[key] == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12)), key
        assert _count(engine, "performance_summaries") == _count(engine, "performance_state") == 1
    finally:
        engine.dispose()
