"""Calendar statuses: also 'unscheduled' (happened, not known in advance), 'cancelled', 'postponed'.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE economic_calendar DROP CONSTRAINT economic_calendar_status_check")
    op.execute(
        "ALTER TABLE economic_calendar ADD CONSTRAINT economic_calendar_status_check CHECK "
        "(status IN ('confirmed','estimated','unscheduled','cancelled','postponed'))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE economic_calendar DROP CONSTRAINT economic_calendar_status_check")
    op.execute(
        "ALTER TABLE economic_calendar ADD CONSTRAINT economic_calendar_status_check CHECK "
        "(status IN ('confirmed','estimated'))"
    )
