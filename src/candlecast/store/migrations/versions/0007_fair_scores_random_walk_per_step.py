"""Scores against a random walk, performance per horizon step, and a scoring backlog so no score is lost.

- ``signal_evaluations`` gains ``crps_rw`` (CRPS of the driftless log-normal random walk from the last close,
  the reference every skill score compares with) and ``in_band_raw`` (whether the outcome fell in the model's
  own p10–p90 band; ``in_band`` is the band that was served). No calibration exists yet, so the served band
  is the model's band and existing rows get ``in_band_raw = in_band``. Existing rows keep their CRPS, computed
  with the plain estimator, and have no ``crps_rw``: the performance table counts them in ``mean_crps`` but
  not in the skill score or the Diebold–Mariano test. ``candlecast score --rescore`` scores them again.
- ``scoring_backlog`` lists the forecasts that may still have steps to score. Every forecast written or
  rewritten enters it (statement-level triggers on ``ml_predictions``); the scoring job removes a forecast
  once every step is scored or its candle is missing while the market has printed later candles. So scoring
  finds unscored work of any age without scanning the whole history.
- ``scoring_state`` keeps, per timeframe, the latest as-of time scoring has run at (``scored_through``): the
  data date the performance table reflects (in a replay, the replayed time, not the wall clock).
- ``signal_performance`` becomes a table written by the scoring job (``jobs.scoring.refresh_performance``) in
  one transaction per timeframe, so readers never see half of a refresh: one row per (symbol, timeframe,
  model, window, step), where step 0 is all steps together. It is empty until the next scoring run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_PERFORMANCE_TABLE = """
CREATE TABLE signal_performance (
    symbol text NOT NULL,
    timeframe text NOT NULL,
    model_name text NOT NULL,
    window_name text NOT NULL,
    step integer NOT NULL CHECK (step >= 0),   -- 0 = all steps together
    n_predictions bigint NOT NULL,
    n_steps bigint NOT NULL,
    hit_rate double precision,
    coverage double precision,
    coverage_raw double precision,
    mean_crps double precision,
    mean_crps_rw double precision,
    crps_skill double precision,
    crps_bp double precision,
    dm_stat double precision,
    dm_pvalue double precision,
    mean_pinball double precision,
    mean_strategy_return double precision,
    sharpe double precision,
    first_as_of timestamptz,
    last_as_of timestamptz,
    refreshed_from timestamptz,
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, model_name, window_name, step)
)"""

# 0005's view, restored by the downgrade.
_VIEW_0005 = """
CREATE MATERIALIZED VIEW signal_performance AS
WITH forecasts AS (
    SELECT prediction_id, symbol, timeframe, model_name, as_of,
        count(*) AS n_steps,
        count(*) FILTER (WHERE direction_hit) AS hits,
        count(*) FILTER (WHERE in_band) AS in_band,
        sum(crps) AS crps_sum,
        count(crps) AS crps_n,
        sum((pinball_10 + pinball_50 + pinball_90) / 3) AS pinball_sum,
        max(strategy_return) FILTER (WHERE step = 1) AS step1_return,
        max(scored_at) AS scored_at
    FROM signal_evaluations
    GROUP BY prediction_id, symbol, timeframe, model_name, as_of
), tagged AS (
    SELECT f.*, max(as_of) OVER (PARTITION BY symbol, timeframe, model_name) AS newest FROM forecasts f
), windows AS (
    SELECT 'all'::text AS window_name, t.* FROM tagged t
    UNION ALL
    SELECT 'trailing_30d', t.* FROM tagged t WHERE t.as_of > t.newest - interval '30 days'
)
SELECT symbol, timeframe, model_name, window_name,
    count(*) AS n_predictions,
    sum(n_steps)::bigint AS n_steps,
    sum(hits)::float8 / sum(n_steps) AS hit_rate,
    sum(in_band)::float8 / sum(n_steps) AS coverage,
    sum(crps_sum) / nullif(sum(crps_n), 0) AS mean_crps,
    sum(pinball_sum) / sum(n_steps) AS mean_pinball,
    avg(step1_return) AS mean_strategy_return,
    CASE WHEN stddev_samp(step1_return) > 0 THEN
        avg(step1_return) / stddev_samp(step1_return) * sqrt(CASE timeframe WHEN '1h' THEN 8760 ELSE 252 END)
    END AS sharpe,
    min(as_of) AS first_as_of,
    max(as_of) AS last_as_of,
    max(scored_at) AS refreshed_from
FROM windows
GROUP BY symbol, timeframe, model_name, window_name
"""


def upgrade() -> None:
    op.execute("ALTER TABLE signal_evaluations ADD COLUMN crps_rw double precision, ADD COLUMN in_band_raw boolean")
    op.execute("UPDATE signal_evaluations SET in_band_raw = in_band")
    op.execute("ALTER TABLE signal_evaluations ALTER COLUMN in_band_raw SET NOT NULL")

    op.execute("""
    CREATE TABLE scoring_backlog (
        prediction_id bigint PRIMARY KEY,
        timeframe text NOT NULL
    )""")
    # Forecasts that are not fully scored yet (settled ones leave at the next scoring run).
    op.execute("""
    INSERT INTO scoring_backlog (prediction_id, timeframe)
    SELECT p.id, p.timeframe FROM ml_predictions p
    WHERE (SELECT count(*) FROM signal_evaluations e WHERE e.prediction_id = p.id) < p.pred_len""")
    op.execute("""
    CREATE FUNCTION queue_predictions_for_scoring() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO scoring_backlog (prediction_id, timeframe)
        SELECT id, timeframe FROM written ON CONFLICT (prediction_id) DO NOTHING;
        RETURN NULL;
    END $$""")
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER trg_ml_predictions_backlog_{event.lower()} AFTER {event} ON ml_predictions "
            "REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION queue_predictions_for_scoring()"
        )
    # Deleting forecasts deletes their backlog entries, as it deletes their scores (0004).
    op.execute("""
    CREATE OR REPLACE FUNCTION delete_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations WHERE prediction_id = OLD.id;
        DELETE FROM scoring_backlog WHERE prediction_id = OLD.id;
        RETURN OLD;
    END $$""")
    op.execute("""
    CREATE OR REPLACE FUNCTION truncate_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations;  -- TRUNCATE is refused while the triggering TRUNCATE holds the table
        DELETE FROM scoring_backlog;
        RETURN NULL;
    END $$""")

    op.execute("""
    CREATE TABLE scoring_state (
        timeframe text PRIMARY KEY,
        scored_through timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""")
    # What scoring had covered so far: the newest scored candle's close (a lower bound of the as-of times).
    op.execute("""
    INSERT INTO scoring_state (timeframe, scored_through)
    SELECT timeframe, max(target_ts) + CASE timeframe WHEN '1h' THEN interval '1 hour' ELSE interval '1 day' END
    FROM signal_evaluations GROUP BY timeframe""")

    op.execute("DROP MATERIALIZED VIEW signal_performance")
    op.execute(_PERFORMANCE_TABLE)


def downgrade() -> None:
    op.execute("DROP TABLE signal_performance")
    op.execute(_VIEW_0005)
    op.execute(
        "CREATE UNIQUE INDEX ux_signal_performance ON signal_performance (symbol, timeframe, model_name, window_name)"
    )
    op.execute("DROP TABLE scoring_state")
    op.execute("""
    CREATE OR REPLACE FUNCTION truncate_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations;  -- TRUNCATE is refused while the triggering TRUNCATE holds the table
        RETURN NULL;
    END $$""")
    op.execute("""
    CREATE OR REPLACE FUNCTION delete_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations WHERE prediction_id = OLD.id;
        RETURN OLD;
    END $$""")
    for event in ("insert", "update"):
        op.execute(f"DROP TRIGGER trg_ml_predictions_backlog_{event} ON ml_predictions")
    op.execute("DROP FUNCTION queue_predictions_for_scoring()")
    op.execute("DROP TABLE scoring_backlog")
    op.execute("ALTER TABLE signal_evaluations DROP COLUMN in_band_raw, DROP COLUMN crps_rw")
