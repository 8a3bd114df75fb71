"""Per-step high and low sample paths of a forecast, and the graded touch probabilities of past forecasts.

- ``ml_predictions.samples_high`` / ``samples_low``: the sampled highs and lows (paths × steps, like ``samples``)
  of models that give OHLC paths (Kronos); null otherwise. Path questions judge a touch on them
  (``candlecast.paths``, basis "high/low").
- ``path_evaluations``: touch probabilities of scored forecasts graded against what happened, per (symbol,
  timeframe, model, window): Brier score and reliability bins (``store.path_scores``).

Revision ID: 0010
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0010"
# Another branch adds 0009 (calibration) at the same time; the chain is set to 0009 -> 0010 when both are merged.
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE ml_predictions ADD COLUMN samples_high real[], ADD COLUMN samples_low real[]")
    op.execute(
        """
        CREATE TABLE path_evaluations (
            symbol text NOT NULL,
            timeframe text NOT NULL,
            model_name text NOT NULL,
            window_name text NOT NULL,
            forecasts integer NOT NULL,
            questions integer NOT NULL,
            brier double precision,
            brier_climatology double precision,
            basis text NOT NULL,
            bin_edges double precision[] NOT NULL,
            bin_predicted double precision[] NOT NULL,
            bin_observed double precision[] NOT NULL,
            bin_count integer[] NOT NULL,
            first_as_of timestamptz,
            last_as_of timestamptz,
            computed_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (symbol, timeframe, model_name, window_name)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS path_evaluations")
    op.execute("ALTER TABLE ml_predictions DROP COLUMN IF EXISTS samples_low, DROP COLUMN IF EXISTS samples_high")
