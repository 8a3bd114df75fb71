"""Calibrated bands: the served p10/p90 may differ from the model's own, and both are kept.

``ml_predictions`` gains ``p10_raw`` and ``p90_raw`` (the model's own band, one value per step) and
``calibration`` (jsonb: how the served band was reached — per step the ACI miss level and conformal quantile of
each tail, the number of past outcomes used, gamma — or why it was not: ``too few outcomes``, ``off``; see
``jobs.calibrate``). ``p10``/``p50``/``p90`` and ``samples`` hold the band that is served. Existing rows were
never calibrated: their raw columns stay NULL, which readers take as "the served band is the model's band".
Downgrading drops the raw bands; p10/p90 keep the band that was served.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE ml_predictions ADD COLUMN p10_raw double precision[], ADD COLUMN p90_raw double precision[], "
        "ADD COLUMN calibration jsonb"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE ml_predictions DROP COLUMN calibration, DROP COLUMN p90_raw, DROP COLUMN p10_raw")
