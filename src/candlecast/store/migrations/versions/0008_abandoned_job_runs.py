"""Job runs left 'running' by a process that died can be closed as 'abandoned'.

- ``job_runs.status`` also takes 'abandoned': a 'running' row whose process no longer holds its liveness lock
  (``store.jobs.close_abandoned_job_runs``; the process was killed, crashed or lost its database connection).
- ``ix_job_runs_running``: that check reads only the rows still marked 'running'.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0008"
# The newest revision on this branch; another branch adds 0007 (scoring) at the same time, and the chain is
# set to 0007 -> 0008 when both are merged.
down_revision = "0007"
branch_labels = None
depends_on = None

_STATUSES = "'running','ok','partial','failed','skipped'"


def upgrade() -> None:
    op.execute("ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_status_check")
    op.execute(f"ALTER TABLE job_runs ADD CONSTRAINT job_runs_status_check CHECK (status IN ({_STATUSES},'abandoned'))")
    op.execute("CREATE INDEX ix_job_runs_running ON job_runs (id) WHERE status = 'running'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_job_runs_running")
    op.execute("UPDATE job_runs SET status = 'failed', error = coalesce(error, 'abandoned') WHERE status = 'abandoned'")
    op.execute("ALTER TABLE job_runs DROP CONSTRAINT IF EXISTS job_runs_status_check")
    op.execute(f"ALTER TABLE job_runs ADD CONSTRAINT job_runs_status_check CHECK (status IN ({_STATUSES}))")
