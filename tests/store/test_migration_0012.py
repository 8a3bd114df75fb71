"""Migration 0012 (monthly partitions of forecasts and scores) on a populated database, and partition upkeep."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.scoring import run_scoring
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import upsert_candles
from candlecast.store.evaluations import evaluations_frame, scoring_backlog_ids
from candlecast.store.migrate import current_revision, downgrade, head_revision
from candlecast.store.partitions import maintain_partitions, partitions
from candlecast.store.predictions import Prediction, get_prediction, latest_prediction, upsert_predictions

H = timedelta(hours=1)
# forecasts every 6 hours over four months (each two steps long), the last ones unscored
ORIGINS = [datetime(2026, 8, 1, tzinfo=UTC) + k * timedelta(hours=6) for k in range(0, 4 * 31 * 4, 7)]
NEW_MONTH = datetime(2019, 5, 14, 9, tzinfo=UTC)  # no partition exists for it


def _insert_forecast_sql(conn: sa.Connection, as_of: datetime, k: int) -> None:
    """A forecast row as ``upsert_predictions`` wrote it under 0011 (same columns, arrays and samples)."""
    conn.execute(
        sa.text(
            "INSERT INTO ml_predictions (symbol, timeframe, model_name, model_version, as_of, pred_len, target_ts,"
            " p10, p50, p90, samples, last_close, event_context, provenance, samples_high, samples_low)"
            " VALUES ('BTCUSDT', '1h', 'm', 'v1', :as_of, 2, ARRAY[:as_of, :as_of + interval '1 hour'],"
            " ARRAY[:lo, :lo], ARRAY[:mid, :mid], ARRAY[:hi, :hi], ARRAY[[:mid, :hi], [:lo, :mid]]::real[],"
            " :mid, CAST(:ctx AS jsonb), CAST(:prov AS jsonb), ARRAY[[:hi, :hi], [:mid, :hi]]::real[],"
            " ARRAY[[:lo, :lo], [:lo, :mid]]::real[])"
        ),
        {"as_of": as_of, "lo": 90.0 + k, "mid": 100.0 + k, "hi": 110.0 + k, "ctx": json.dumps({"k": k}),
         "prov": json.dumps({"seed": k})},
    )  # fmt: skip


def _insert_scores_sql(conn: sa.Connection) -> int:
    """Scores of both steps of every forecast but the last three (as write_evaluations stored them)."""
    return conn.execute(
        sa.text(
            "INSERT INTO signal_evaluations (prediction_id, step, symbol, timeframe, model_name, as_of, target_ts,"
            " last_close, realised_close, p10, p50, p90, direction_hit, in_band, in_band_raw, crps, crps_rw,"
            " pinball_10, pinball_50, pinball_90, realised_return, strategy_return)"
            " SELECT p.id, s.step, p.symbol, p.timeframe, p.model_name, p.as_of, p.target_ts[s.step], p.last_close,"
            " p.p50[s.step] + s.step, p.p10[s.step], p.p50[s.step], p.p90[s.step], true, true, true, 1.5 * p.id,"
            " 2.0, 0.1, 0.2, 0.3, 0.01 * s.step, 0.01"
            " FROM ml_predictions p CROSS JOIN generate_series(1, 2) AS s(step)"
            " WHERE p.id <= (SELECT max(id) - 3 FROM ml_predictions)"
        )
    ).rowcount


def seed_scored_history(conn: sa.Connection) -> int:
    """BTCUSDT, a forecast at every origin of ``ORIGINS`` and the scores of all but the last three (plain SQL, as
    the code of 0011 wrote them); the number of scores."""
    conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('BTCUSDT', 'crypto')"))
    for k, as_of in enumerate(ORIGINS):
        _insert_forecast_sql(conn, as_of, k)
    return _insert_scores_sql(conn)


@pytest.fixture
def populated(new_database: Callable[[], str]) -> Iterator[Engine]:
    """A database at 0011 holding forecasts and scores across four months."""
    engine = create_engine_for(new_database())
    downgrade(engine, "0011")
    with engine.begin() as conn:
        seed_scored_history(conn)
    try:
        yield engine
    finally:
        engine.dispose()


def _snapshot(engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        forecasts = pd.read_sql(sa.text("SELECT * FROM ml_predictions ORDER BY id"), conn)
        scores = pd.read_sql(sa.text("SELECT * FROM signal_evaluations ORDER BY prediction_id, step"), conn)
    return forecasts.drop(columns=["samples_dropped_at"], errors="ignore"), scores


def test_upgrade_keeps_every_row_readable_and_new_months_get_partitions(populated: Engine) -> None:
    engine = populated
    before_forecasts, before_scores = _snapshot(engine)
    backlog = scoring_backlog_ids(engine)
    assert len(before_forecasts) == len(ORIGINS) and len(before_scores) == 2 * (len(ORIGINS) - 3)

    upgrade(engine)  # through 0012, to the newest revision
    assert current_revision(engine) == head_revision()
    after_forecasts, after_scores = _snapshot(engine)
    pd.testing.assert_frame_equal(after_forecasts[before_forecasts.columns], before_forecasts)
    pd.testing.assert_frame_equal(after_scores[before_scores.columns], before_scores)
    assert scoring_backlog_ids(engine) == backlog

    # each row sits in its month's partition; nothing in the default ones
    with engine.connect() as conn:
        placed = conn.execute(sa.text(
            "SELECT tableoid::regclass::text, to_char(as_of AT TIME ZONE 'UTC', 'YYYYMM'), count(*) "
            "FROM ml_predictions GROUP BY 1, 2 ORDER BY 1"
        )).all()  # fmt: skip
    assert [row[0] for row in placed] == [f"ml_predictions_p{row[1]}" for row in placed]
    assert {row[1] for row in placed} == {f"{t:%Y%m}" for t in ORIGINS} and len(placed) >= 4
    assert "ml_predictions_p202608" in partitions(engine, "ml_predictions")
    assert partitions(engine, "signal_evaluations")[-1] == "signal_evaluations_default"

    # every forecast reads back through the store, samples included
    for k, row in enumerate(before_forecasts.itertuples()):
        p = get_prediction(engine, int(row.id), with_samples=True)
        assert p is not None and p.as_of == ORIGINS[k] and p.provenance == {"seed": k}
        assert p.samples is not None and p.samples.tolist() == [[100 + k, 110 + k], [90 + k, 100 + k]]
        assert p.samples_high is not None and p.samples_low is not None and p.samples_dropped_at is None
    newest = latest_prediction(engine, "BTCUSDT", "m", "1h")
    assert newest is not None and newest.as_of == ORIGINS[-1]
    assert latest_prediction(engine, "BTCUSDT", "m", "1h", as_of=ORIGINS[3]).as_of == ORIGINS[3]  # type: ignore[union-attr]
    assert len(evaluations_frame(engine, int(before_forecasts.id.iloc[0]))) == 2

    # a forecast in a month with no partition gets one; its scores land in the scores' partition of that month
    with engine.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", pd.DataFrame({
            "ts": [NEW_MONTH - H, NEW_MONTH, NEW_MONTH + H], "close": [100.0, 101.0, 99.0]}))  # fmt: skip
        (new_id,) = upsert_predictions(conn, [Prediction(
            symbol="BTCUSDT", timeframe="1h", model_name="m", as_of=NEW_MONTH, target_ts=[NEW_MONTH, NEW_MONTH + H],
            p10=[95, 94], p50=[100, 100], p90=[105, 106], last_close=100.0,
            samples=np.array([[99, 98], [101, 103]], dtype=np.float32),
        )])  # fmt: skip
    run_scoring(Settings(), engine, "1h", as_of=NEW_MONTH + 3 * H, refresh=False, record=False)
    with engine.connect() as conn:
        where = conn.execute(sa.text("SELECT tableoid::regclass::text FROM ml_predictions WHERE id = :id"),
                             {"id": new_id}).scalar()  # fmt: skip
        scored = conn.execute(sa.text(
            "SELECT tableoid::regclass::text, count(*) FROM signal_evaluations WHERE prediction_id = :id GROUP BY 1"
        ), {"id": new_id}).all()  # fmt: skip
    assert where == "ml_predictions_p201905"
    assert [tuple(r) for r in scored] == [("signal_evaluations_p201905", 2)]

    # the newest forecast is still the newest (an older month was written); deleting it makes the previous one newest
    assert latest_prediction(engine, "BTCUSDT", "m", "1h").as_of == ORIGINS[-1]  # type: ignore[union-attr]
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE as_of = :t"), {"t": ORIGINS[-1]})
    assert latest_prediction(engine, "BTCUSDT", "m", "1h").as_of == ORIGINS[-2]  # type: ignore[union-attr]

    # deleting the instrument still deletes forecasts and scores of every month
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM instruments"))
    with engine.connect() as conn:
        counts = conn.execute(
            sa.text("SELECT (SELECT count(*) FROM ml_predictions), (SELECT count(*) FROM signal_evaluations)")
        ).one()
    assert tuple(counts) == (0, 0)


def test_downgrade_restores_the_unpartitioned_tables_with_their_rows(populated: Engine) -> None:
    engine = populated
    before_forecasts, before_scores = _snapshot(engine)
    upgrade(engine)
    downgrade(engine, "0011")
    after_forecasts, after_scores = _snapshot(engine)
    pd.testing.assert_frame_equal(after_forecasts[before_forecasts.columns], before_forecasts)
    pd.testing.assert_frame_equal(after_scores, before_scores)
    with engine.connect() as conn:
        kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'ml_predictions'")).scalar()
        keys = conn.execute(
            sa.text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ml_predictions_pkey'")
        ).scalar()
    assert kind == "r" and keys == "PRIMARY KEY (id)"
    upgrade(engine)  # and up again
    assert len(_snapshot(engine)[0]) == len(ORIGINS)


def test_rows_caught_by_the_default_partition_move_to_their_month_with_their_scores(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('BTCUSDT', 'crypto')"))
        stray = datetime(2018, 3, 5, tzinfo=UTC)
        _insert_forecast_sql(conn, stray, 0)  # plain SQL: no partition is created for March 2018
        _insert_forecast_sql(conn, stray + H, 1)
        conn.execute(sa.text(
            "INSERT INTO signal_evaluations (prediction_id, step, symbol, timeframe, model_name, as_of, target_ts,"
            " last_close, realised_close, p10, p50, p90, direction_hit, in_band, in_band_raw, pinball_10,"
            " pinball_50, pinball_90, realised_return, strategy_return)"
            " SELECT id, 1, symbol, timeframe, model_name, as_of, target_ts[1], 1, 1, 1, 1, 1, true, true, true,"
            " 0, 0, 0, 0, 0 FROM ml_predictions"
        ))  # fmt: skip
    backlog = scoring_backlog_ids(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml_predictions_default")).scalar() == 2
    result = maintain_partitions(engine, now=datetime(2018, 3, 20, tzinfo=UTC))
    assert result.moved == {"ml_predictions_p201803": 2, "signal_evaluations_p201803": 2}
    assert "ml_predictions_p201804" in result.created  # the next month, ahead
    with engine.connect() as conn:
        counts = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM ml_predictions_default), (SELECT count(*) FROM ml_predictions_p201803),"
            " (SELECT count(*) FROM signal_evaluations_p201803), (SELECT count(*) FROM signal_evaluations)"
        )).one()  # fmt: skip
    assert tuple(counts) == (0, 2, 2, 2)  # moved, not deleted: no trigger dropped the scores
    assert scoring_backlog_ids(engine) == backlog
    assert maintain_partitions(engine, now=datetime(2018, 3, 20, tzinfo=UTC)).moved == {}  # idempotent
