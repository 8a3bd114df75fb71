"""Migration 0016 (``signal_evaluations.pit``): down and up again on a database holding scores."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from tests.store.test_migration_0012 import seed_scored_history

from candlecast.store import create_engine_for, upgrade
from candlecast.store.migrate import current_revision, downgrade, head_revision


def _columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("signal_evaluations")}


def test_downgrade_drops_the_pit_and_keeps_the_scores_and_upgrade_adds_it_empty(
    new_database: Callable[[], str],
) -> None:
    engine = create_engine_for(new_database())
    try:
        with engine.begin() as conn:
            scores = seed_scored_history(conn)
            conn.execute(sa.text("UPDATE signal_evaluations SET pit = 0.25"))
        assert scores > 100 and "pit" in _columns(engine)

        downgrade(engine, "0015")
        assert current_revision(engine) == "0015" and "pit" not in _columns(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM signal_evaluations")).scalar_one() == scores
            partitions = conn.execute(sa.text(  # every partition lost it with the parent
                "SELECT count(*) FROM information_schema.columns WHERE column_name = 'pit'"
            )).scalar_one()  # fmt: skip
            assert partitions == 0

        upgrade(engine)
        assert current_revision(engine) == head_revision() and "pit" in _columns(engine)
        with engine.connect() as conn:
            counts = conn.execute(sa.text("SELECT count(*), count(pit) FROM signal_evaluations")).one()
        assert tuple(counts) == (scores, 0)  # NULL until rescored (candlecast score --rescore)
    finally:
        engine.dispose()
