"""Job-run claims and a scoring index.

- ``job_runs.scheduled_for``: the cron fire time a scheduled run belongs to. A unique index on
  (job_name, scheduled_for) lets exactly one of several schedulers claim each fire (high availability);
  manual and external-cron runs leave it NULL and are never deduplicated.
- ``ix_ml_predictions_timeframe_as_of``: the scoring job reads predictions of one timeframe by as_of range.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE job_runs ADD COLUMN scheduled_for timestamptz")
    op.execute(
        "CREATE UNIQUE INDEX ux_job_runs_scheduled ON job_runs (job_name, scheduled_for) "
        "WHERE scheduled_for IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_ml_predictions_timeframe_as_of ON ml_predictions (timeframe, as_of)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_ml_predictions_timeframe_as_of")
    op.execute("DROP INDEX IF EXISTS ux_job_runs_scheduled")
    op.execute("ALTER TABLE job_runs DROP COLUMN IF EXISTS scheduled_for")
