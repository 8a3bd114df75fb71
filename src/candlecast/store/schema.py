"""SQLAlchemy Core table objects used to build queries.

The authoritative DDL (constraints, triggers, the monthly partitions of ``ml_predictions`` and
``signal_evaluations``: migration 0012, ``store.partitions``) lives in the Alembic migrations; tests check that
these column lists match the migrated database.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

__all__ = [
    "CANDLE_COLUMNS",
    "TIMEFRAMES",
    "candle_table",
    "central_bank_rates",
    "economic_calendar",
    "instruments",
    "job_runs",
    "metadata",
    "ml_predictions",
    "model_adapters",
    "ohlcv_1d",
    "ohlcv_1h",
    "path_evaluations",
    "path_performance",
    "scoring_backlog",
    "scoring_state",
    "signal_evaluations",
    "signal_performance",
]

metadata = sa.MetaData()
TIMEFRAMES: tuple[str, ...] = ("1h", "1d")
CANDLE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
_TS = sa.DateTime(timezone=True)

instruments = sa.Table(
    "instruments",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("asset_class", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("quote_currency", sa.Text),
    sa.Column("bar_kind", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)


def _candles(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("symbol", sa.Text, primary_key=True),
        sa.Column("ts", _TS, primary_key=True),
        *(sa.Column(c, sa.Float, nullable=(c != "close")) for c in CANDLE_COLUMNS),
    )


ohlcv_1h = _candles("ohlcv_1h")
ohlcv_1d = _candles("ohlcv_1d")


def candle_table(timeframe: str) -> sa.Table:
    """The candle table of a timeframe ('1h' or '1d')."""
    if timeframe == "1h":
        return ohlcv_1h
    if timeframe == "1d":
        return ohlcv_1d
    raise ValueError(f"timeframe must be one of {TIMEFRAMES}, found {timeframe!r}")


economic_calendar = sa.Table(
    "economic_calendar",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("scheduled_at", _TS, nullable=False),
    sa.Column("period", sa.Text),
    sa.Column("actual", sa.Float),
    sa.Column("actual_vintage", sa.Text),
    sa.Column("forecast", sa.Float),
    sa.Column("previous", sa.Float),
    sa.Column("importance", sa.Text),
    sa.Column("source", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
)

central_bank_rates = sa.Table(
    "central_bank_rates",
    metadata,
    sa.Column("bank_code", sa.Text, primary_key=True),
    sa.Column("change_date", sa.Date, primary_key=True),
    sa.Column("rate", sa.Float, nullable=False),
    sa.Column("previous_rate", sa.Float),
    sa.Column("source", sa.Text),
)

ml_predictions = sa.Table(
    "ml_predictions",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("generated_at", _TS, nullable=False),
    sa.Column("as_of", _TS, nullable=False),
    sa.Column("pred_len", sa.Integer, nullable=False),
    sa.Column("target_ts", pg.ARRAY(_TS), nullable=False),
    sa.Column("p10", pg.ARRAY(sa.Float), nullable=False),
    sa.Column("p50", pg.ARRAY(sa.Float), nullable=False),
    sa.Column("p90", pg.ARRAY(sa.Float), nullable=False),
    sa.Column("samples", pg.ARRAY(sa.REAL, dimensions=2)),
    sa.Column("last_close", sa.Float, nullable=False),
    sa.Column("event_context", pg.JSONB),
    sa.Column("provenance", pg.JSONB),  # migration 0011: model, checkpoint, code, configuration, cutoffs, seed
    sa.Column("samples_high", pg.ARRAY(sa.REAL, dimensions=2)),  # per-step highs of OHLC paths (migration 0010)
    sa.Column("samples_low", pg.ARRAY(sa.REAL, dimensions=2)),
    sa.Column("p10_raw", pg.ARRAY(sa.Float)),  # the model's own band; p10/p90 are the served (calibrated) one
    sa.Column("p90_raw", pg.ARRAY(sa.Float)),
    sa.Column("calibration", pg.JSONB),  # how the served band was reached (jobs.calibrate)
    sa.Column("samples_dropped_at", _TS),  # migration 0012: when retention dropped the sample paths
)

signal_evaluations = sa.Table(
    "signal_evaluations",
    metadata,
    sa.Column("prediction_id", sa.BigInteger, primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("as_of", _TS, nullable=False),
    sa.Column("target_ts", _TS, nullable=False),
    sa.Column("last_close", sa.Float, nullable=False),
    sa.Column("realised_close", sa.Float, nullable=False),
    sa.Column("p10", sa.Float, nullable=False),
    sa.Column("p50", sa.Float, nullable=False),
    sa.Column("p90", sa.Float, nullable=False),
    sa.Column("direction_hit", sa.Boolean, nullable=False),
    sa.Column("in_band", sa.Boolean, nullable=False),  # of the served band
    sa.Column("in_band_raw", sa.Boolean, nullable=False),  # of the model's own band
    sa.Column("crps", sa.Float),  # fair estimator from the sample paths
    sa.Column("crps_rw", sa.Float),  # the random-walk reference
    sa.Column("pinball_10", sa.Float, nullable=False),
    sa.Column("pinball_50", sa.Float, nullable=False),
    sa.Column("pinball_90", sa.Float, nullable=False),
    sa.Column("realised_return", sa.Float, nullable=False),
    sa.Column("strategy_return", sa.Float, nullable=False),
    sa.Column("scored_at", _TS, nullable=False),
    sa.Column("pit", sa.Float),  # randomized PIT of the outcome in the served samples (migration 0016)
)

# Written by the scoring job, one timeframe per transaction; step 0 = all horizon steps together.
signal_performance = sa.Table(
    "signal_performance",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("window_name", sa.Text, primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("n_predictions", sa.BigInteger, nullable=False),
    sa.Column("n_steps", sa.BigInteger, nullable=False),
    sa.Column("hit_rate", sa.Float),
    sa.Column("coverage", sa.Float),
    sa.Column("coverage_low", sa.Float),  # a 90% interval of coverage (migration 0015)
    sa.Column("coverage_high", sa.Float),
    sa.Column("coverage_raw", sa.Float),
    sa.Column("mean_crps", sa.Float),
    sa.Column("mean_crps_rw", sa.Float),
    sa.Column("crps_skill", sa.Float),
    sa.Column("crps_bp", sa.Float),
    sa.Column("dm_stat", sa.Float),
    sa.Column("dm_pvalue", sa.Float),
    sa.Column("mean_pinball", sa.Float),
    sa.Column("mean_strategy_return", sa.Float),
    sa.Column("sharpe", sa.Float),
    sa.Column("first_as_of", _TS),
    sa.Column("last_as_of", _TS),
    sa.Column("refreshed_from", _TS),
    sa.Column("refreshed_at", _TS, nullable=False),
)

# Touch questions of past forecasts, graded once the horizon passed (migration 0013): one row per (forecast, k).
path_evaluations = sa.Table(
    "path_evaluations",
    metadata,
    sa.Column("prediction_id", sa.BigInteger, primary_key=True),
    sa.Column("k", sa.SmallInteger, primary_key=True),  # the level is k random-walk deviations over the horizon
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("as_of", _TS, nullable=False),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("level", sa.Float, nullable=False),
    sa.Column("side", sa.Text, nullable=False),  # 'above' | 'below'
    sa.Column("p_touch", sa.Float, nullable=False),  # share of the forecast's paths that touch the level
    sa.Column("p_touch_rw", sa.Float, nullable=False),  # the random walk's probability (reflection principle)
    sa.Column("paths", sa.Integer, nullable=False),
    sa.Column("touched", sa.Boolean, nullable=False),
    sa.Column("uses", sa.Text, nullable=False),  # 'ohlc' (highs/lows) | 'close'
    sa.Column("scored_at", _TS, nullable=False),
)

# How the graded touch questions scored (migration 0014), per (scope, model, timeframe, window): written by the
# scoring job (jobs.touches.refresh_path_performance), one timeframe per transaction; scope '*' = every symbol.
path_performance = sa.Table(
    "path_performance",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),  # a symbol, or '*'
    sa.Column("model_name", sa.Text, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("window_name", sa.Text, primary_key=True),
    sa.Column("forecasts", sa.Integer, nullable=False),
    sa.Column("questions", sa.Integer, nullable=False),
    sa.Column("grid", pg.ARRAY(sa.SmallInteger), nullable=False),
    sa.Column("uses", pg.JSONB, nullable=False),
    sa.Column("brier", sa.Float),
    sa.Column("brier_plain", sa.Float),
    sa.Column("brier_rw", sa.Float),
    sa.Column("skill", sa.Float),
    sa.Column("dm_stat", sa.Float),
    sa.Column("dm_pvalue", sa.Float),
    sa.Column("base_rate", sa.Float),
    sa.Column("reliability", pg.JSONB, nullable=False),
    sa.Column("decomposition", pg.JSONB, nullable=False),
    sa.Column("first_as_of", _TS, nullable=False),
    sa.Column("last_as_of", _TS, nullable=False),
    sa.Column("refreshed_at", _TS, nullable=False),
)

# Forecasts that may still have steps to score (filled by triggers, emptied by the scoring job).
scoring_backlog = sa.Table(
    "scoring_backlog",
    metadata,
    sa.Column("prediction_id", sa.BigInteger, primary_key=True),
    sa.Column("timeframe", sa.Text, nullable=False),
)

# Per timeframe, the latest as-of time scoring has reached.
scoring_state = sa.Table(
    "scoring_state",
    metadata,
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("scored_through", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("job_name", sa.Text, nullable=False),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("finished_at", _TS),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("as_of", _TS),
    sa.Column("counts", pg.JSONB, nullable=False),
    sa.Column("errors", pg.JSONB, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("host", sa.Text),
    sa.Column("scheduled_for", _TS),
)

model_adapters = sa.Table(
    "model_adapters",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("asset_class", sa.Text, nullable=False),
    sa.Column("base_model", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("trained_at", _TS, nullable=False),
    sa.Column("as_of", _TS),
    sa.Column("metrics", pg.JSONB, nullable=False),
    sa.Column("promoted", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
)
