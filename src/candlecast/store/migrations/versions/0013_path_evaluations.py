"""Touch questions asked of past forecasts, graded (docs/paths.md, "Scored like forecasts").

``path_evaluations``: one row per (forecast, grid level ``k``): the level (``k`` random-walk standard deviations
over the horizon from the last close), its side, the probability the forecast's paths gave that it is touched
by the horizon (``p_touch``, from ``paths`` paths), the random walk's (``p_touch_rw``), whether it was
(``touched``) and what a touch was judged on (``uses``: the highs/lows of OHLC paths, or the closes). Written by
the scoring job (``jobs.touches``) once every candle of the horizon is in. Deleting or truncating forecasts
deletes their rows (triggers of their own, beside the ones that delete step scores); rewriting one deletes them
in the write itself (``store.predictions``).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE path_evaluations (
        prediction_id bigint NOT NULL,
        k smallint NOT NULL,
        symbol text NOT NULL,
        timeframe text NOT NULL,
        model_name text NOT NULL,
        as_of timestamptz NOT NULL,
        horizon integer NOT NULL CHECK (horizon >= 1),
        level double precision NOT NULL CHECK (level > 0),
        side text NOT NULL CHECK (side IN ('above', 'below')),
        p_touch double precision NOT NULL CHECK (p_touch BETWEEN 0 AND 1),
        p_touch_rw double precision NOT NULL CHECK (p_touch_rw BETWEEN 0 AND 1),
        paths integer NOT NULL CHECK (paths >= 1),
        touched boolean NOT NULL,
        uses text NOT NULL CHECK (uses IN ('ohlc', 'close')),
        scored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prediction_id, k)
    )""")
    op.execute("CREATE INDEX ix_path_evaluations_group ON path_evaluations (timeframe, model_name, as_of)")
    op.execute("""
    CREATE FUNCTION delete_prediction_paths() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM path_evaluations WHERE prediction_id = OLD.id;
        RETURN OLD;
    END $$""")
    op.execute("""
    CREATE FUNCTION truncate_prediction_paths() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM path_evaluations;
        RETURN NULL;
    END $$""")
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_delete_paths AFTER DELETE ON ml_predictions "
        "FOR EACH ROW EXECUTE FUNCTION delete_prediction_paths()"
    )
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_truncate_paths AFTER TRUNCATE ON ml_predictions "
        "FOR EACH STATEMENT EXECUTE FUNCTION truncate_prediction_paths()"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION delete_prediction_paths() CASCADE")  # with its trigger
    op.execute("DROP FUNCTION truncate_prediction_paths() CASCADE")
    op.execute("DROP TABLE path_evaluations")
