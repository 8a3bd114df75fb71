"""The touch-question summary precomputed: ``path_performance``.

The evaluation page, ``GET /api/v1/performance`` and the MCP ``get_performance`` tool show per (model, timeframe)
how the touch probabilities of its paths scored (``path_scores``; docs/paths.md, "Scored like forecasts"). Until
now each cache miss read every graded question of the window (``path_evaluations``: about a million rows a model
for a year of hourly forecasts of 23 instruments) and scored them (``paths.touch_scores``). The scoring job now
does it after every run, as it does for ``signal_performance`` (``jobs.touches.refresh_path_performance``), and
the payload reads the result.

One row per (scope, model, timeframe, window): ``scope`` is a symbol, or ``'*'`` for every symbol together (the
page and the API ask with or without a symbol; ``'*'`` is also how the API writes "every symbol", and no symbol can
be it: ``instruments.symbol`` is ``[A-Z0-9][A-Z0-9._-]*``). The columns are
``paths.TouchScore``'s: how many forecasts and questions, the grid asked, the questions per basis (``uses``), fair
and plain Brier score, the random walk's, skill, Diebold–Mariano statistic and p-value, the base rate, the
reliability table and Murphy's decomposition (jsonb, NaN as null), the oldest and newest forecast origin graded,
and when the row was computed. The verdict is not stored: it depends on the gateway's settings.

Empty after the upgrade: the next scoring run (or ``candlecast score``) fills it. The downgrade drops it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE path_performance (
        scope text NOT NULL CHECK (scope <> ''),
        model_name text NOT NULL,
        timeframe text NOT NULL,
        window_name text NOT NULL CHECK (window_name IN ('all', 'trailing_30d')),
        forecasts integer NOT NULL CHECK (forecasts >= 1),
        questions integer NOT NULL CHECK (questions >= forecasts),
        grid smallint[] NOT NULL,
        uses jsonb NOT NULL,
        brier double precision,
        brier_plain double precision,
        brier_rw double precision,
        skill double precision,
        dm_stat double precision,
        dm_pvalue double precision,
        base_rate double precision,
        reliability jsonb NOT NULL,
        decomposition jsonb NOT NULL,
        first_as_of timestamptz NOT NULL,
        last_as_of timestamptz NOT NULL,
        refreshed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (scope, model_name, timeframe, window_name)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE path_performance")
