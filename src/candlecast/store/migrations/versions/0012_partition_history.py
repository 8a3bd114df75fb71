"""History that grows: ``ml_predictions`` and ``signal_evaluations`` partitioned by month of ``as_of``.

Both tables become PostgreSQL range-partitioned tables on ``as_of`` (the forecast's origin; a score row carries
its forecast's ``as_of``), one partition per calendar month in UTC (``<table>_pYYYYMM``) plus a default
partition (``<table>_default``) that catches a row of a month with no partition yet. The reads that matter are
bounded by ``as_of`` (the latest forecast of a slot, scoring by backlog, the trailing performance window,
retention), so they touch the newest partitions; old months can be pruned, archived or dropped whole.

The existing rows are copied: each table is rebuilt as a partitioned table with partitions for every month
that holds rows and for the current and next month, the rows are copied, the old table is dropped and the new
one takes its name, its sequence, its indexes, constraints and triggers.

What changes for keys:

- ``ml_predictions``: the primary key is ``(id, as_of)`` (a partitioned table's unique constraints must include
  the partition key). ``id`` still comes from ``ml_predictions_id_seq`` and stays unique in practice; nothing
  refers to a forecast by id with a foreign key (0004 dropped the only one). The slot key
  ``uq_ml_predictions_slot (symbol, timeframe, model_name, as_of)`` already includes ``as_of``, so the writers'
  ``ON CONFLICT (symbol, timeframe, model_name, as_of)`` works unchanged. The foreign key to ``instruments``
  (ON DELETE CASCADE) stays.
- ``signal_evaluations``: the primary key is ``(prediction_id, step, as_of)``. A forecast has one ``as_of``, so
  it is unique exactly when ``(prediction_id, step)`` was. No writer uses ON CONFLICT on it.
- The row trigger that deletes a deleted forecast's scores matches on ``(prediction_id, as_of)``, so it probes
  one partition.

New months: ``store.partitions.ensure_partitions`` creates a month's partition before a writer copies rows of
that month (``upsert_predictions``, ``write_evaluations``), and ``candlecast store maintain`` creates the coming
months ahead and moves rows the default partition caught into their month's partition (docs/store.md).

``ml_predictions.samples_dropped_at``: when retention (``store.keep_samples_days``, ``candlecast store prune``)
dropped the forecast's sample paths; NULL while they are kept (or were never stored). Such an update neither
notifies gateways nor queues the forecast for scoring (the notify trigger and the backlog trigger skip rows with
it set); ``ix_ml_predictions_samples_kept`` finds the forecasts that still have samples by age.

The performance refresh becomes incremental (``jobs.scoring.refresh_performance``, ``jobs.performance_state``):

- ``performance_summaries``: per (timeframe, symbol, model), mergeable summaries of the scores of the series'
  forecasts made before its ``through``;
- ``performance_state``: per timeframe, that its rows are kept incrementally, and the scoring watermark of the
  last refresh (``refreshed_from`` of every row: a refresh rewrites only the rows of the series that changed);
- ``performance_changes``: per (timeframe, symbol, model), the oldest origin whose scores changed, logged by
  ``write_evaluations`` for inserted scores and by statement triggers on ``signal_evaluations`` for deleted or
  updated ones (rewritten or deleted forecasts, ``--rescore``) and TRUNCATE (``-infinity``, no series: all of
  them). A refresh recomputes only the series logged; a change older than a series' ``through`` recomputes that
  series from all its scores.

The newest forecast of a slot is found without touching every partition: ``forecast_heads`` holds the newest
``as_of`` of each (symbol, model, timeframe), advanced by a statement trigger on insert and moved back by a row
trigger when the newest forecast is deleted (emptied by TRUNCATE), so the latest-forecast read is one probe of it
and one of the partition of that month (``store.predictions.latest_prediction``).

The downgrade rebuilds both tables unpartitioned with the 0011 keys, copying every row, and drops
``samples_dropped_at``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_PREDICTION_COLUMNS = (
    "id, symbol, timeframe, model_name, model_version, generated_at, as_of, pred_len, target_ts, p10, p50, p90, "
    "samples, last_close, event_context, provenance, samples_high, samples_low, p10_raw, p90_raw, calibration"
)
_EVALUATION_COLUMNS = (
    "prediction_id, step, symbol, timeframe, model_name, as_of, target_ts, last_close, realised_close, p10, p50, "
    "p90, direction_hit, in_band, in_band_raw, crps, crps_rw, pinball_10, pinball_50, pinball_90, realised_return, "
    "strategy_return, scored_at"
)
_SELECT_PREDICTIONS = f"SELECT {_PREDICTION_COLUMNS} FROM ml_predictions"
_SELECT_EVALUATIONS = f"SELECT {_EVALUATION_COLUMNS} FROM signal_evaluations"

# Columns and checks as in 0001-0011; the key constraints are added after the copy.
_PREDICTIONS_BODY = """(
    id bigint NOT NULL DEFAULT nextval('ml_predictions_id_seq'),
    symbol text NOT NULL,
    timeframe text NOT NULL CONSTRAINT ml_predictions_timeframe_check CHECK (timeframe IN ('1h','1d')),
    model_name text NOT NULL,
    model_version text NOT NULL DEFAULT '',
    generated_at timestamptz NOT NULL DEFAULT now(),
    as_of timestamptz NOT NULL,
    pred_len integer NOT NULL CONSTRAINT ml_predictions_pred_len_check CHECK (pred_len > 0),
    target_ts timestamptz[] NOT NULL,
    p10 double precision[] NOT NULL,
    p50 double precision[] NOT NULL,
    p90 double precision[] NOT NULL,
    samples real[],
    last_close double precision NOT NULL,
    event_context jsonb,
    provenance jsonb,
    samples_high real[],
    samples_low real[],
    p10_raw double precision[],
    p90_raw double precision[],
    calibration jsonb,
    {extra}
    CONSTRAINT ck_ml_predictions_lengths CHECK (
        cardinality(target_ts) = pred_len AND cardinality(p10) = pred_len
        AND cardinality(p50) = pred_len AND cardinality(p90) = pred_len)
)"""
_EVALUATIONS_BODY = """(
    prediction_id bigint NOT NULL,
    step integer NOT NULL CONSTRAINT signal_evaluations_step_check CHECK (step >= 1),
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
    in_band_raw boolean NOT NULL,
    crps double precision,
    crps_rw double precision,
    pinball_10 double precision NOT NULL,
    pinball_50 double precision NOT NULL,
    pinball_90 double precision NOT NULL,
    realised_return double precision NOT NULL,
    strategy_return double precision NOT NULL,
    scored_at timestamptz NOT NULL DEFAULT now()
)"""

_DELETE_SCORES = """
CREATE OR REPLACE FUNCTION delete_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM signal_evaluations WHERE prediction_id = OLD.id {match_as_of};
    DELETE FROM scoring_backlog WHERE prediction_id = OLD.id;
    RETURN OLD;
END $$"""


_QUEUE = """
CREATE OR REPLACE FUNCTION queue_predictions_for_scoring() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO scoring_backlog (prediction_id, timeframe)
    SELECT id, timeframe FROM written {where} ON CONFLICT (prediction_id) DO NOTHING;
    RETURN NULL;
END $$"""


def _prediction_triggers(retention: bool) -> None:
    """The triggers of ml_predictions; with ``retention``, rows whose samples retention dropped neither notify nor
    enter the scoring backlog (their update changed no number)."""
    op.execute(_QUEUE.format(where="WHERE samples_dropped_at IS NULL" if retention else ""))
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_notify AFTER INSERT OR UPDATE ON ml_predictions FOR EACH ROW "
        + ("WHEN (NEW.samples_dropped_at IS NULL) " if retention else "")
        + "EXECUTE FUNCTION notify_ml_prediction()"
    )
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_delete_scores AFTER DELETE ON ml_predictions "
        "FOR EACH ROW EXECUTE FUNCTION delete_prediction_scores()"
    )
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_truncate_scores AFTER TRUNCATE ON ml_predictions "
        "FOR EACH STATEMENT EXECUTE FUNCTION truncate_prediction_scores()"
    )
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER trg_ml_predictions_backlog_{event.lower()} AFTER {event} ON ml_predictions "
            "REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION queue_predictions_for_scoring()"
        )


def _prediction_keys() -> None:
    op.execute(
        "ALTER TABLE ml_predictions ADD CONSTRAINT ml_predictions_symbol_fkey "
        "FOREIGN KEY (symbol) REFERENCES instruments(symbol) ON DELETE CASCADE"
    )
    op.execute(
        "ALTER TABLE ml_predictions ADD CONSTRAINT uq_ml_predictions_slot UNIQUE (symbol, timeframe, model_name, as_of)"
    )
    op.execute("CREATE INDEX ix_ml_predictions_latest ON ml_predictions (symbol, model_name, timeframe, as_of DESC)")
    op.execute("CREATE INDEX ix_ml_predictions_timeframe_as_of ON ml_predictions (timeframe, as_of)")


def _months() -> list[str]:
    """First days (UTC) of the months that hold forecasts or scores, and of the current and next month."""
    rows = (
        op.get_bind()
        .execute(
            text("""
        SELECT DISTINCT date_trunc('month', m AT TIME ZONE 'UTC')::date FROM (
            SELECT DISTINCT date_trunc('month', as_of AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
            FROM ml_predictions
            UNION SELECT DISTINCT date_trunc('month', as_of AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            FROM signal_evaluations
            UNION SELECT now() UNION SELECT now() + interval '1 month'
        ) s ORDER BY 1""")
        )
        .all()
    )
    return [row[0].isoformat() for row in rows]


def _partitions(parent: str, name: str, months: list[str]) -> None:
    """Monthly partitions ``<name>_pYYYYMM`` of ``parent`` and its default partition ``<name>_default``."""
    for first in months:
        year, month = int(first[:4]), int(first[5:7])
        following = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
        op.execute(
            f"CREATE TABLE {name}_p{year:04d}{month:02d} PARTITION OF {parent} "
            f"FOR VALUES FROM ('{first} 00:00:00+00') TO ('{following} 00:00:00+00')"
        )
    op.execute(f"CREATE TABLE {name}_default PARTITION OF {parent} DEFAULT")


def _incremental_performance() -> None:
    op.execute("""
    CREATE TABLE performance_state (
        timeframe text PRIMARY KEY,       -- a row: signal_performance of the timeframe is kept incrementally
        refreshed_from timestamptz,       -- the scoring watermark at the last refresh (every row reflects it)
        built_at timestamptz NOT NULL DEFAULT now()  -- the last refresh from all scores
    )""")
    op.execute("""
    CREATE TABLE performance_summaries (
        timeframe text NOT NULL,
        symbol text NOT NULL,
        model_name text NOT NULL,
        through timestamptz NOT NULL,     -- the summaries cover the scores of the series' forecasts made before this
        state bytea NOT NULL,             -- jobs.performance_state.dump_state
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (timeframe, symbol, model_name)
    )""")
    op.execute("""
    CREATE TABLE performance_changes (
        id bigserial PRIMARY KEY,
        timeframe text NOT NULL,
        symbol text,                      -- the series whose scores changed; NULL: every series (TRUNCATE)
        model_name text,
        min_as_of timestamptz NOT NULL,   -- the oldest forecast origin whose scores changed
        logged_at timestamptz NOT NULL DEFAULT now()
    )""")
    op.execute("""
    CREATE FUNCTION log_score_changes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO performance_changes (timeframe, symbol, model_name, min_as_of)
        SELECT timeframe, symbol, model_name, min(as_of) FROM changed GROUP BY timeframe, symbol, model_name;
        RETURN NULL;
    END $$""")
    op.execute("""
    CREATE FUNCTION log_scores_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO performance_changes (timeframe, min_as_of) VALUES ('1h', '-infinity'), ('1d', '-infinity');
        RETURN NULL;
    END $$""")
    op.execute(
        "CREATE TRIGGER trg_signal_evaluations_deleted AFTER DELETE ON signal_evaluations "
        "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION log_score_changes()"
    )
    op.execute(
        "CREATE TRIGGER trg_signal_evaluations_updated AFTER UPDATE ON signal_evaluations "
        "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION log_score_changes()"
    )
    op.execute(
        "CREATE TRIGGER trg_signal_evaluations_truncated AFTER TRUNCATE ON signal_evaluations "
        "FOR EACH STATEMENT EXECUTE FUNCTION log_scores_truncated()"
    )


def _forecast_heads() -> None:
    op.execute("""
    CREATE TABLE forecast_heads (
        symbol text NOT NULL,
        model_name text NOT NULL,
        timeframe text NOT NULL,
        as_of timestamptz NOT NULL,       -- the newest forecast of the slot
        PRIMARY KEY (symbol, model_name, timeframe)
    )""")
    op.execute("""
    INSERT INTO forecast_heads (symbol, model_name, timeframe, as_of)
    SELECT DISTINCT ON (symbol, model_name, timeframe) symbol, model_name, timeframe, as_of FROM ml_predictions
    ORDER BY symbol, model_name, timeframe, as_of DESC""")
    op.execute("""
    CREATE FUNCTION advance_forecast_heads() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO forecast_heads (symbol, model_name, timeframe, as_of)
        SELECT DISTINCT ON (symbol, model_name, timeframe) symbol, model_name, timeframe, as_of FROM inserted
        ORDER BY symbol, model_name, timeframe, as_of DESC
        ON CONFLICT (symbol, model_name, timeframe) DO UPDATE SET as_of = greatest(forecast_heads.as_of, EXCLUDED.as_of)
        WHERE EXCLUDED.as_of > forecast_heads.as_of;
        RETURN NULL;
    END $$""")
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_heads AFTER INSERT ON ml_predictions "
        "REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION advance_forecast_heads()"
    )
    op.execute("""
    CREATE FUNCTION retreat_forecast_head() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM forecast_heads h WHERE h.symbol = OLD.symbol AND h.model_name = OLD.model_name
            AND h.timeframe = OLD.timeframe AND h.as_of = OLD.as_of;
        IF FOUND THEN
            INSERT INTO forecast_heads (symbol, model_name, timeframe, as_of)
            SELECT symbol, model_name, timeframe, as_of FROM ml_predictions
            WHERE symbol = OLD.symbol AND model_name = OLD.model_name AND timeframe = OLD.timeframe
            ORDER BY as_of DESC LIMIT 1;
        END IF;
        RETURN OLD;
    END $$""")
    op.execute(
        "CREATE TRIGGER trg_ml_predictions_head_deleted AFTER DELETE ON ml_predictions "
        "FOR EACH ROW EXECUTE FUNCTION retreat_forecast_head()"
    )
    op.execute("""
    CREATE OR REPLACE FUNCTION truncate_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations;  -- TRUNCATE is refused while the triggering TRUNCATE holds the table
        DELETE FROM scoring_backlog;
        DELETE FROM forecast_heads;
        RETURN NULL;
    END $$""")


def upgrade() -> None:
    months = _months()
    op.execute("SET LOCAL jit = off")

    # -- ml_predictions
    op.execute(
        f"CREATE TABLE ml_predictions_partitioned "
        f"{_PREDICTIONS_BODY.format(extra='samples_dropped_at timestamptz,')} PARTITION BY RANGE (as_of)"
    )
    _partitions("ml_predictions_partitioned", "ml_predictions", months)
    op.execute(f"INSERT INTO ml_predictions_partitioned ({_PREDICTION_COLUMNS}) {_SELECT_PREDICTIONS}")
    op.execute("ALTER SEQUENCE ml_predictions_id_seq OWNED BY NONE")
    op.execute("DROP TABLE ml_predictions")  # its triggers go with it (the functions stay)
    op.execute("ALTER TABLE ml_predictions_partitioned RENAME TO ml_predictions")
    op.execute("ALTER SEQUENCE ml_predictions_id_seq OWNED BY ml_predictions.id")
    op.execute("ALTER TABLE ml_predictions ADD CONSTRAINT ml_predictions_pkey PRIMARY KEY (id, as_of)")
    _prediction_keys()

    # -- signal_evaluations
    op.execute(f"CREATE TABLE signal_evaluations_partitioned {_EVALUATIONS_BODY} PARTITION BY RANGE (as_of)")
    _partitions("signal_evaluations_partitioned", "signal_evaluations", months)
    op.execute(f"INSERT INTO signal_evaluations_partitioned ({_EVALUATION_COLUMNS}) {_SELECT_EVALUATIONS}")
    op.execute("DROP TABLE signal_evaluations")
    op.execute("ALTER TABLE signal_evaluations_partitioned RENAME TO signal_evaluations")
    op.execute(
        "ALTER TABLE signal_evaluations ADD CONSTRAINT signal_evaluations_pkey PRIMARY KEY (prediction_id, step, as_of)"
    )

    op.execute(_DELETE_SCORES.format(match_as_of="AND as_of = OLD.as_of"))
    _prediction_triggers(retention=True)
    # what retention (store.retention) looks for: forecasts that still have samples, by age
    op.execute("CREATE INDEX ix_ml_predictions_samples_kept ON ml_predictions (as_of) WHERE samples IS NOT NULL")
    _incremental_performance()
    _forecast_heads()
    op.execute("ANALYZE ml_predictions")
    op.execute("ANALYZE signal_evaluations")


def downgrade() -> None:
    op.execute("SET LOCAL jit = off")
    op.execute("DROP TABLE performance_state, performance_summaries, performance_changes, forecast_heads")
    op.execute("DROP FUNCTION advance_forecast_heads() CASCADE")
    op.execute("DROP FUNCTION retreat_forecast_head() CASCADE")
    op.execute("""
    CREATE OR REPLACE FUNCTION truncate_prediction_scores() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM signal_evaluations;  -- TRUNCATE is refused while the triggering TRUNCATE holds the table
        DELETE FROM scoring_backlog;
        RETURN NULL;
    END $$""")
    op.execute("DROP FUNCTION log_score_changes() CASCADE")
    op.execute("DROP FUNCTION log_scores_truncated() CASCADE")
    op.execute(_QUEUE.format(where=""))  # before the column it reads goes
    op.execute(f"CREATE TABLE ml_predictions_plain {_PREDICTIONS_BODY.format(extra='')}")
    op.execute(f"INSERT INTO ml_predictions_plain ({_PREDICTION_COLUMNS}) {_SELECT_PREDICTIONS}")
    op.execute("ALTER SEQUENCE ml_predictions_id_seq OWNED BY NONE")
    op.execute("DROP TABLE ml_predictions")  # with its partitions and triggers
    op.execute("ALTER TABLE ml_predictions_plain RENAME TO ml_predictions")
    op.execute("ALTER SEQUENCE ml_predictions_id_seq OWNED BY ml_predictions.id")
    op.execute("ALTER TABLE ml_predictions ADD CONSTRAINT ml_predictions_pkey PRIMARY KEY (id)")
    _prediction_keys()

    op.execute(f"CREATE TABLE signal_evaluations_plain {_EVALUATIONS_BODY}")
    op.execute(f"INSERT INTO signal_evaluations_plain ({_EVALUATION_COLUMNS}) {_SELECT_EVALUATIONS}")
    op.execute("DROP TABLE signal_evaluations")
    op.execute("ALTER TABLE signal_evaluations_plain RENAME TO signal_evaluations")
    op.execute(
        "ALTER TABLE signal_evaluations ADD CONSTRAINT signal_evaluations_pkey PRIMARY KEY (prediction_id, step)"
    )

    op.execute(_DELETE_SCORES.format(match_as_of=""))
    _prediction_triggers(retention=False)
