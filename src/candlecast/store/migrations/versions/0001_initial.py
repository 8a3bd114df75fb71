"""Initial schema: instruments, candles, calendar, predictions, evaluations, performance, jobs, adapters.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A double precision value that is neither NaN nor +-Infinity. In Postgres NaN sorts above
# Infinity, so the two comparisons exclude all three.
_FINITE = "({c} > '-Infinity'::float8 AND {c} < 'Infinity'::float8)"


def _finite(column: str, nullable: bool = True) -> str:
    check = _FINITE.format(c=column)
    return f"({column} IS NULL OR {check})" if nullable else check


def _candle_table(name: str, grid_check: str) -> str:
    return f"""
    CREATE TABLE {name} (
        symbol text NOT NULL REFERENCES instruments(symbol) ON DELETE CASCADE,
        ts timestamptz NOT NULL,
        open double precision,
        high double precision,
        low double precision,
        close double precision NOT NULL,
        volume double precision,
        amount double precision,
        PRIMARY KEY (symbol, ts),
        CONSTRAINT ck_{name}_finite CHECK (
            {_finite("open")} AND {_finite("high")} AND {_finite("low")} AND {_finite("close", False)}
            AND {_finite("volume")} AND {_finite("amount")}),
        -- close-only bars have no open/high/low at all; never half a candle
        CONSTRAINT ck_{name}_ohlc_all_or_none CHECK (
            (open IS NULL) = (high IS NULL) AND (high IS NULL) = (low IS NULL)),
        CONSTRAINT ck_{name}_high_ge_low CHECK (high IS NULL OR high >= low),
        CONSTRAINT ck_{name}_open_in_range CHECK (open IS NULL OR open BETWEEN low AND high),
        CONSTRAINT ck_{name}_close_in_range CHECK (high IS NULL OR close BETWEEN low AND high),
        CONSTRAINT ck_{name}_volume_nonneg CHECK (volume IS NULL OR volume >= 0),
        CONSTRAINT ck_{name}_amount_nonneg CHECK (amount IS NULL OR amount >= 0),
        CONSTRAINT ck_{name}_on_grid CHECK ({grid_check})
    )"""


def upgrade() -> None:
    op.execute("""
    CREATE TABLE instruments (
        symbol text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9][A-Z0-9._-]{0,31}$'),
        asset_class text NOT NULL CHECK (asset_class IN ('crypto','equity','fx','commodity','index')),
        name text,
        source text,
        quote_currency text,
        bar_kind text NOT NULL DEFAULT 'ohlc' CHECK (bar_kind IN ('ohlc','close')),
        active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now()
    )""")
    op.execute(_candle_table("ohlcv_1h", "date_trunc('hour', ts) = ts"))
    op.execute(_candle_table("ohlcv_1d", "date_trunc('day', ts AT TIME ZONE 'UTC') = ts AT TIME ZONE 'UTC'"))

    op.execute(f"""
    CREATE TABLE economic_calendar (
        id bigserial PRIMARY KEY,
        event_type text NOT NULL,
        title text NOT NULL DEFAULT '',
        country text NOT NULL DEFAULT 'US',
        symbol text NOT NULL DEFAULT '',
        scheduled_at timestamptz NOT NULL,
        period text,
        actual double precision,
        actual_vintage text CHECK (actual_vintage IN ('revised','first_print')),
        forecast double precision,
        previous double precision,
        importance text,
        source text,
        status text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed','estimated')),
        CONSTRAINT uq_economic_calendar_event UNIQUE (event_type, country, symbol, scheduled_at),
        CONSTRAINT ck_economic_calendar_finite CHECK (
            {_finite("actual")} AND {_finite("forecast")} AND {_finite("previous")})
    )""")
    op.execute("CREATE INDEX ix_economic_calendar_scheduled_at ON economic_calendar (scheduled_at)")

    op.execute(f"""
    CREATE TABLE central_bank_rates (
        bank_code text NOT NULL,
        change_date date NOT NULL,
        rate double precision NOT NULL,
        previous_rate double precision,
        source text,
        PRIMARY KEY (bank_code, change_date),
        CONSTRAINT ck_central_bank_rates_finite CHECK ({_finite("rate", False)} AND {_finite("previous_rate")})
    )""")

    op.execute("""
    CREATE TABLE ml_predictions (
        id bigserial PRIMARY KEY,
        symbol text NOT NULL REFERENCES instruments(symbol) ON DELETE CASCADE,
        timeframe text NOT NULL CHECK (timeframe IN ('1h','1d')),
        model_name text NOT NULL,
        model_version text NOT NULL DEFAULT '',
        generated_at timestamptz NOT NULL DEFAULT now(),
        as_of timestamptz NOT NULL,
        pred_len integer NOT NULL CHECK (pred_len > 0),
        target_ts timestamptz[] NOT NULL,
        p10 double precision[] NOT NULL,
        p50 double precision[] NOT NULL,
        p90 double precision[] NOT NULL,
        samples real[],                -- (sample_count, pred_len) sampled closes
        last_close double precision NOT NULL,
        event_context jsonb,
        CONSTRAINT uq_ml_predictions_slot UNIQUE (symbol, timeframe, model_name, as_of),
        CONSTRAINT ck_ml_predictions_lengths CHECK (
            cardinality(target_ts) = pred_len AND cardinality(p10) = pred_len
            AND cardinality(p50) = pred_len AND cardinality(p90) = pred_len)
    )""")
    op.execute("CREATE INDEX ix_ml_predictions_latest ON ml_predictions (symbol, model_name, timeframe, as_of DESC)")
    # Gateways LISTEN on this channel and drop their cached entry for the slot at once.
    op.execute("""
    CREATE FUNCTION notify_ml_prediction() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('ml_predictions', json_build_object(
            'id', NEW.id, 'symbol', NEW.symbol, 'timeframe', NEW.timeframe,
            'model_name', NEW.model_name, 'as_of', NEW.as_of)::text);
        RETURN NEW;
    END $$""")
    op.execute("""
    CREATE TRIGGER trg_ml_predictions_notify AFTER INSERT OR UPDATE ON ml_predictions
    FOR EACH ROW EXECUTE FUNCTION notify_ml_prediction()""")

    op.execute("""
    CREATE TABLE signal_evaluations (
        prediction_id bigint NOT NULL REFERENCES ml_predictions(id) ON DELETE CASCADE,
        step integer NOT NULL CHECK (step >= 1),
        symbol text NOT NULL,
        timeframe text NOT NULL,
        model_name text NOT NULL,
        as_of timestamptz NOT NULL,
        target_ts timestamptz NOT NULL,
        last_close double precision NOT NULL,
        realised_close double precision NOT NULL,
        p10 double precision NOT NULL,
        p50 double precision NOT NULL,
        p90 double precision NOT NULL,
        direction_hit boolean NOT NULL,
        in_band boolean NOT NULL,
        crps double precision,
        pinball_10 double precision NOT NULL,
        pinball_50 double precision NOT NULL,
        pinball_90 double precision NOT NULL,
        realised_return double precision NOT NULL,
        strategy_return double precision NOT NULL,
        scored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prediction_id, step)
    )""")
    op.execute("CREATE INDEX ix_signal_evaluations_group ON signal_evaluations (symbol, timeframe, model_name, as_of)")

    # Per (symbol, timeframe, model, window): 'all' = every scored step; 'trailing' = predictions
    # made in the 30 days before the newest scored prediction of that group (replays stay meaningful).
    # Sharpe uses the one-step-ahead strategy return (one trade per prediction slot), annualised
    # with 8760 periods a year for 1h and 252 for 1d.
    op.execute("""
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
    """)
    # A unique index lets REFRESH ... CONCURRENTLY run without blocking readers.
    op.execute(
        "CREATE UNIQUE INDEX ux_signal_performance ON signal_performance (symbol, timeframe, model_name, window_name)"
    )

    op.execute("""
    CREATE TABLE job_runs (
        id bigserial PRIMARY KEY,
        job_name text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status text NOT NULL DEFAULT 'running'
            CHECK (status IN ('running','ok','partial','failed','skipped')),
        as_of timestamptz,
        counts jsonb NOT NULL DEFAULT '{}'::jsonb,
        errors jsonb NOT NULL DEFAULT '{}'::jsonb,
        error text,
        host text
    )""")
    op.execute("CREATE INDEX ix_job_runs_name_started ON job_runs (job_name, started_at DESC)")

    op.execute("""
    CREATE TABLE model_adapters (
        id bigserial PRIMARY KEY,
        asset_class text NOT NULL,
        base_model text NOT NULL,
        path text NOT NULL,
        trained_at timestamptz NOT NULL DEFAULT now(),
        as_of timestamptz,
        metrics jsonb NOT NULL DEFAULT '{}'::jsonb,
        promoted boolean NOT NULL DEFAULT false,
        reason text
    )""")
    # At most one promoted adapter per asset class and base model.
    op.execute(
        "CREATE UNIQUE INDEX ux_model_adapters_promoted ON model_adapters (asset_class, base_model) WHERE promoted"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS model_adapters, job_runs CASCADE")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS signal_performance")
    op.execute("DROP TABLE IF EXISTS signal_evaluations, ml_predictions CASCADE")
    op.execute("DROP FUNCTION IF EXISTS notify_ml_prediction() CASCADE")
    op.execute("DROP TABLE IF EXISTS central_bank_rates, economic_calendar, ohlcv_1d, ohlcv_1h, instruments CASCADE")
