"""Per-step high and low sample paths of a forecast.

``ml_predictions.samples_high`` / ``samples_low``: the sampled highs and lows (paths × steps, like ``samples``) of
models that give OHLC paths (Kronos); null otherwise. Path questions judge a touch on them (``candlecast.paths``,
basis "high/low").

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0010"
# Another branch adds 0009 (calibration) at the same time; the chain is set to 0009 -> 0010 when both are merged.
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ml_predictions ADD COLUMN samples_high real[], ADD COLUMN samples_low real[]")


def downgrade() -> None:
    op.execute("ALTER TABLE ml_predictions DROP COLUMN IF EXISTS samples_low, DROP COLUMN IF EXISTS samples_high")
