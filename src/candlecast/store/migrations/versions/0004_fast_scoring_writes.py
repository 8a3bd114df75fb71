"""Faster bulk writes of forecast scores (the scoring job writes about a million rows per million steps).

Measured on 1,000,000 rows (bench/score.py), two index-like costs dominated the insert, beyond the heap and
the primary key:

- the foreign key ``signal_evaluations.prediction_id -> ml_predictions(id)``: one referential check per row;
- ``ix_signal_evaluations_group (symbol, timeframe, model_name, as_of)``: no query needs it (the performance
  view and the calibration read aggregate whole groups with a sequential scan).

Both go. What the foreign key guaranteed is kept another way:

- scores are only inserted by ``store.evaluations.write_evaluations``, which first share-locks the forecasts
  it scores (and drops those that changed), so a score never points at a missing forecast;
- deleting forecasts deletes their scores through triggers (row DELETE, and TRUNCATE), as ON DELETE CASCADE
  did, including deletes cascaded from ``instruments``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE signal_evaluations DROP CONSTRAINT IF EXISTS signal_evaluations_prediction_id_fkey")
    op.execute("DROP INDEX IF EXISTS ix_signal_evaluations_group")
    op.execute("""
    CREATE FUNCTION delete_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations WHERE prediction_id = OLD.id;
        RETURN OLD;
    END $$""")
    op.execute("""
    CREATE TRIGGER trg_ml_predictions_delete_scores AFTER DELETE ON ml_predictions
    FOR EACH ROW EXECUTE FUNCTION delete_prediction_scores()""")
    op.execute("""
    CREATE FUNCTION truncate_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations;  -- TRUNCATE is refused while the triggering TRUNCATE holds the table
        RETURN NULL;
    END $$""")
    op.execute("""
    CREATE TRIGGER trg_ml_predictions_truncate_scores AFTER TRUNCATE ON ml_predictions
    FOR EACH STATEMENT EXECUTE FUNCTION truncate_prediction_scores()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_ml_predictions_truncate_scores ON ml_predictions")
    op.execute("DROP FUNCTION IF EXISTS truncate_prediction_scores()")
    op.execute("DROP TRIGGER IF EXISTS trg_ml_predictions_delete_scores ON ml_predictions")
    op.execute("DROP FUNCTION IF EXISTS delete_prediction_scores()")
    op.execute("CREATE INDEX ix_signal_evaluations_group ON signal_evaluations (symbol, timeframe, model_name, as_of)")
    op.execute(
        "DELETE FROM signal_evaluations e "
        "WHERE NOT EXISTS (SELECT 1 FROM ml_predictions p WHERE p.id = e.prediction_id)"
    )
    op.execute(
        "ALTER TABLE signal_evaluations ADD CONSTRAINT signal_evaluations_prediction_id_fkey "
        "FOREIGN KEY (prediction_id) REFERENCES ml_predictions(id) ON DELETE CASCADE"
    )
