"""A 90% interval for the served band's coverage: ``signal_performance.coverage_low`` and ``coverage_high``.

A year of daily forecasts of 30 steps that overlap holds only about 8 independent windows, so its coverage is
known to about ±0.1 (docs/calibration.md, "Measured"); a row that said only "coverage 0.745" read as
miscalibrated when 0.80 is well within the noise. Each row now carries the interval
``coverage ± t sqrt(V / n)`` clipped to [0, 1] (``scores.coverage_interval``, ``t`` the Student t quantile with
one degree of freedom per horizon the row holds, less one), ``V`` the Newey–West
long-run variance of the in-band indicator per step in origin order (a step row, ``h - 1`` lags for step ``h``)
or of each forecast's share of its steps in the band (the all-steps row, ``H - 1`` lags): the series and lags of
the Diebold–Mariano test. Both are NULL where the row holds one horizon or less.

The incremental refresh keeps the in-band series in its summaries (``jobs.performance_state``, layout 2); the
stored summaries lack it. The upgrade adds the two columns (NULL in the existing rows) and empties
``performance_state`` and ``performance_summaries``, so the next refresh (the next scoring run, or ``candlecast
score``) recomputes every timeframe from all its scores and fills them. The downgrade drops the two columns; the
summaries of layout 2 cannot be read by the older ``load_state``, so it empties them too.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE signal_performance ADD COLUMN coverage_low double precision, "
        "ADD COLUMN coverage_high double precision"
    )
    _forget_summaries()


def downgrade() -> None:
    op.execute("ALTER TABLE signal_performance DROP COLUMN coverage_low, DROP COLUMN coverage_high")
    _forget_summaries()


def _forget_summaries() -> None:
    """The next refresh of every timeframe is a full one (``jobs.scoring.refresh_performance``: no
    ``performance_state`` row) and writes summaries of the layout the code of this revision reads."""
    op.execute("DELETE FROM performance_summaries")
    op.execute("DELETE FROM performance_state")
