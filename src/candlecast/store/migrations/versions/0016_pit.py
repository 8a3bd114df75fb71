"""Where each outcome fell in its forecast's sample ensemble: ``signal_evaluations.pit``.

Coverage and the share of outcomes below p10/p50/p90 check three points of a forecast distribution; the
probability integral transform checks all of it. For a scored step with M sample values, ``pit`` is the randomized
PIT ``(below + u (ties + 1)) / (M + 1)`` (``scores.randomized_pit``; ``u`` a fixed uniform per (forecast, step),
``scores.step_uniform``), uniform on (0, 1) when the outcome is exchangeable with the samples, so its histogram
(the evaluation page, ``store.performance.pit_histogram``) is flat for a calibrated model, U-shaped for bands too
narrow, humped for bands too wide. It is of the served (calibrated) paths. NULL for steps of forecasts without
samples and for scores written before this revision; ``candlecast score --rescore`` fills the latter.

The upgrade adds the column to the partitioned table (and so to every partition); the downgrade drops it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE signal_evaluations ADD COLUMN pit double precision")


def downgrade() -> None:
    op.execute("ALTER TABLE signal_evaluations DROP COLUMN pit")
