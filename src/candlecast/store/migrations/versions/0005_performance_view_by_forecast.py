"""signal_performance computed through one row per forecast: same columns, same values, faster refresh.

The scoring job refreshes the view after every run, so in a running system the refresh, not the few hundred
new scores, is what each run costs, and it grows with the history. The first definition sorted every score
twice (a window function per group, then ``count(DISTINCT prediction_id)``). This one hash-aggregates the
scores of each forecast once (hit, in-band, CRPS and pinball sums, the step-1 strategy return), then
aggregates those forecast rows per (symbol, timeframe, model) over 'all' and 'trailing_30d'.

Definitions are unchanged: 'trailing_30d' = forecasts made in the 30 days before the newest scored forecast
of the group; Sharpe = mean / sample std of the one-step-ahead strategy returns, annualised with 8760
periods a year for 1h and 252 for 1d.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BY_FORECAST = """
CREATE MATERIALIZED VIEW signal_performance AS
WITH forecasts AS (
    SELECT prediction_id, symbol, timeframe, model_name, as_of,
        count(*) AS n_steps,
        count(*) FILTER (WHERE direction_hit) AS hits,
        count(*) FILTER (WHERE in_band) AS in_band,
        sum(crps) AS crps_sum,
        count(crps) AS crps_n,
        sum((pinball_10 + pinball_50 + pinball_90) / 3) AS pinball_sum,
        max(strategy_return) FILTER (WHERE step = 1) AS step1_return,
        max(scored_at) AS scored_at
    FROM signal_evaluations
    GROUP BY prediction_id, symbol, timeframe, model_name, as_of
), tagged AS (
    SELECT f.*, max(as_of) OVER (PARTITION BY symbol, timeframe, model_name) AS newest FROM forecasts f
), windows AS (
    SELECT 'all'::text AS window_name, t.* FROM tagged t
    UNION ALL
    SELECT 'trailing_30d', t.* FROM tagged t WHERE t.as_of > t.newest - interval '30 days'
)
SELECT symbol, timeframe, model_name, window_name,
    count(*) AS n_predictions,
    sum(n_steps)::bigint AS n_steps,
    sum(hits)::float8 / sum(n_steps) AS hit_rate,
    sum(in_band)::float8 / sum(n_steps) AS coverage,
    sum(crps_sum) / nullif(sum(crps_n), 0) AS mean_crps,
    sum(pinball_sum) / sum(n_steps) AS mean_pinball,
    avg(step1_return) AS mean_strategy_return,
    CASE WHEN stddev_samp(step1_return) > 0 THEN
        avg(step1_return) / stddev_samp(step1_return) * sqrt(CASE timeframe WHEN '1h' THEN 8760 ELSE 252 END)
    END AS sharpe,
    min(as_of) AS first_as_of,
    max(as_of) AS last_as_of,
    max(scored_at) AS refreshed_from
FROM windows
GROUP BY symbol, timeframe, model_name, window_name
"""

_BY_STEP = """
CREATE MATERIALIZED VIEW signal_performance AS
WITH tagged AS (
    SELECT e.*, max(e.as_of) OVER (PARTITION BY symbol, timeframe, model_name) AS newest
    FROM signal_evaluations e
), windows AS (
    SELECT 'all'::text AS window_name, t.* FROM tagged t
    UNION ALL
    SELECT 'trailing_30d', t.* FROM tagged t WHERE t.as_of > t.newest - interval '30 days'
)
SELECT symbol, timeframe, model_name, window_name,
    count(DISTINCT prediction_id) AS n_predictions,
    count(*) AS n_steps,
    avg(direction_hit::int)::float8 AS hit_rate,
    avg(in_band::int)::float8 AS coverage,
    avg(crps) AS mean_crps,
    avg((pinball_10 + pinball_50 + pinball_90) / 3) AS mean_pinball,
    avg(strategy_return) FILTER (WHERE step = 1) AS mean_strategy_return,
    CASE WHEN stddev_samp(strategy_return) FILTER (WHERE step = 1) > 0 THEN
        avg(strategy_return) FILTER (WHERE step = 1)
        / stddev_samp(strategy_return) FILTER (WHERE step = 1)
        * sqrt(CASE timeframe WHEN '1h' THEN 8760 ELSE 252 END)
    END AS sharpe,
    min(as_of) AS first_as_of,
    max(as_of) AS last_as_of,
    max(scored_at) AS refreshed_from
FROM windows
GROUP BY symbol, timeframe, model_name, window_name
"""

_INDEX = "CREATE UNIQUE INDEX ux_signal_performance ON signal_performance (symbol, timeframe, model_name, window_name)"


def upgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW signal_performance")
    op.execute(_BY_FORECAST)
    op.execute(_INDEX)


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW signal_performance")
    op.execute(_BY_STEP)
    op.execute(_INDEX)
