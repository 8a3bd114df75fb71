"""A provenance record on every forecast row (docs/provenance.md).

- ``ml_predictions.provenance`` (jsonb, null for rows written before it): model and revision, checkpoint
  hashes, adapter, code version, configuration hash, data cutoffs, inputs hash and seed; ``inputs_changed``
  is set on it when the forecast's input candles are found rewritten afterwards.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0011"
# The newest revision on this branch; other branches add 0009 (calibration) and 0010 (OHLC paths) at the same
# time, and the chain is set when they are merged.
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ml_predictions ADD COLUMN provenance jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE ml_predictions DROP COLUMN IF EXISTS provenance")
