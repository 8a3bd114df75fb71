"""Migration 0007 on a database that already holds forecasts and scores (written by the 0006 schema)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from candlecast.store import create_engine_for, upgrade
from candlecast.store.evaluations import scored_through, scoring_backlog_ids
from candlecast.store.migrate import downgrade

AS_OF = datetime(2020, 1, 2, tzinfo=UTC)


def test_existing_scores_keep_their_values_and_unfinished_forecasts_enter_the_backlog(
    new_database: Callable[[], str],
) -> None:
    engine = create_engine_for(new_database())
    try:
        downgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('BTCUSDT', 'crypto')"))
            for as_of in ("2020-01-02T00:00Z", "2020-01-02T01:00Z"):  # two forecasts of two steps
                conn.execute(sa.text(
                    "INSERT INTO ml_predictions (symbol, timeframe, model_name, as_of, pred_len, target_ts, p10, p50,"
                    " p90, last_close) VALUES ('BTCUSDT', '1h', 'm', CAST(:as_of AS timestamptz), 2,"
                    " ARRAY[CAST(:as_of AS timestamptz), CAST(:as_of AS timestamptz) + interval '1 hour'],"
                    " '{1,1}', '{2,2}', '{3,3}', 2)"
                ), {"as_of": as_of})  # fmt: skip
            # the first forecast is fully scored, the second has one of its two steps
            for pid, step, band in ((1, 1, True), (1, 2, False), (2, 1, True)):
                conn.execute(sa.text(
                    "INSERT INTO signal_evaluations (prediction_id, step, symbol, timeframe, model_name, as_of,"
                    " target_ts, last_close, realised_close, p10, p50, p90, direction_hit, in_band, crps,"
                    " pinball_10, pinball_50, pinball_90, realised_return, strategy_return)"
                    " SELECT :pid, :step, symbol, timeframe, model_name, as_of, target_ts[:step], 2, 2.5, 1, 2, 3,"
                    " true, :band, 0.4, 0, 0, 0, 0.25, 0.25 FROM ml_predictions WHERE id = :pid"
                ), {"pid": pid, "step": step, "band": band})  # fmt: skip

        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT in_band, in_band_raw, crps, crps_rw FROM signal_evaluations ORDER BY prediction_id, step"
            )).all()  # fmt: skip
            assert [tuple(r) for r in rows] == [(True, True, 0.4, None), (False, False, 0.4, None),
                                                (True, True, 0.4, None)]  # fmt: skip
            assert conn.execute(sa.text("SELECT count(*) FROM signal_performance")).scalar() == 0
        assert scoring_backlog_ids(engine) == [2]
        # the newest scored candle (01:00 + 1 h) closed at 02:00: scoring had got at least that far
        assert scored_through(engine, "1h") == datetime(2020, 1, 2, 2, tzinfo=UTC)

        downgrade(engine, "0006")  # back to the materialised view, scores intact
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM signal_evaluations")).scalar() == 3
            conn.execute(sa.text("REFRESH MATERIALIZED VIEW signal_performance"))
    finally:
        engine.dispose()
