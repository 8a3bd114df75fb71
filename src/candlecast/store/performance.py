"""The ``signal_performance`` table (its inputs, its replacement, its reads) and a calibration summary.

``signal_performance`` holds, per (symbol, timeframe, model, window, step), how the forecasts did: hit rate,
p10–p90 coverage of the served and of the raw band (nominal 80%) with a 90% interval of the served one, mean fair
CRPS, the random walk's mean CRPS on the same steps and the skill against it, CRPS in basis points of the last
close, a Diebold–Mariano test of model vs random walk, pinball loss and Sharpe. Step 0 is all steps together.
The scoring job computes the rows (``jobs.scoring.refresh_performance``) from ``scored_steps`` and stores them with
``replace_performance``, one timeframe per transaction (the rows of the series whose scores changed), so a
reader sees the old rows or the new ones.

``calibration`` summarises ``signal_evaluations`` directly: for a calibrated forecast the realised close falls
below its p10, p50 and p90 in 10%, 50% and 90% of the scored steps.

Windows: ``all``, and ``trailing_30d`` = forecasts made in the 30 days before the newest scored forecast of
the same (symbol, timeframe, model), so a replay of old data has a meaningful trailing window.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import decode_binary_copy
from candlecast.store._sql import cursor, read_rows

__all__ = [
    "ALL_STEPS",
    "PERFORMANCE_COLUMNS",
    "PIT_BINS",
    "PERFORMANCE_WINDOWS",
    "TRAILING_WINDOW",
    "CalibrationRow",
    "PerformanceChanges",
    "PerformanceRow",
    "ScoredSteps",
    "calibration",
    "count_performance_summaries",
    "forget_performance_changes",
    "lock_performance",
    "oldest_backlog_origin",
    "performance",
    "performance_changes",
    "read_performance_state",
    "read_performance_summaries",
    "replace_performance",
    "scored_steps",
    "write_performance_state",
    "write_performance_summaries",
]

PERFORMANCE_WINDOWS: tuple[str, ...] = ("all", "trailing_30d")
TRAILING_WINDOW = timedelta(days=30)  # the span of 'trailing_30d'
ALL_STEPS = 0  # the ``step`` of the row that takes every horizon step together


@dataclass(frozen=True)
class PerformanceRow:
    symbol: str
    timeframe: str
    model_name: str
    window_name: str
    step: int  # horizon step (1-based); 0 = all steps together
    n_predictions: int  # forecasts with a scored step (in the row's step)
    n_steps: int  # scored steps
    hit_rate: float | None
    coverage: float | None  # share of scored steps with p10 <= realised <= p90, served band
    coverage_low: float | None  # a 90% interval of coverage (Newey–West: overlapping forecasts share outcomes)
    coverage_high: float | None
    coverage_raw: float | None  # the same for the model's own band (equal to coverage until bands are calibrated)
    mean_crps: float | None  # fair CRPS, mean over the steps with sample paths
    mean_crps_rw: float | None  # the random walk's CRPS, mean over the steps that have both CRPS
    crps_skill: float | None  # 1 - sum(crps) / sum(crps_rw) over those same steps (> 0: better than the walk)
    crps_bp: float | None  # mean of crps / last close, in basis points
    dm_stat: float | None  # Diebold–Mariano statistic of crps - crps_rw (< 0: the model's loss is lower)
    dm_pvalue: float | None  # its two-sided p-value
    mean_pinball: float | None
    mean_strategy_return: float | None
    sharpe: float | None
    first_as_of: datetime | None
    last_as_of: datetime | None
    refreshed_from: datetime | None  # the data date the row reflects: scoring had reached this as-of time


# The stored columns, in order (``refreshed_at``, the wall clock of the refresh, takes its default).
PERFORMANCE_COLUMNS: tuple[str, ...] = tuple(PerformanceRow.__dataclass_fields__)


@dataclass(frozen=True)
class CalibrationRow:
    model_name: str
    timeframe: str
    n_steps: int
    below_p10: float  # share of scored steps whose realised close is below p10 (nominal 0.1)
    below_p50: float  # nominal 0.5
    below_p90: float  # nominal 0.9
    in_band: float  # share inside [p10, p90] (nominal 0.8)
    in_band_raw: float  # the same for the model's own band
    n_pit: int  # scored steps with a PIT (those of forecasts with samples, scored since migration 0016)
    pit_counts: list[int]  # of them, how many PITs fell in each tenth of (0, 1): equal for a calibrated model


# -- reads -----------------------------------------------------------------------------------------


def performance(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: str | None = "all",
    step: int | None = ALL_STEPS,
) -> list[PerformanceRow]:
    """Rows of ``signal_performance``, filtered by whichever arguments are given (None = any).

    ``step`` defaults to 0, the all-steps rows (one per symbol, timeframe, model and window); a horizon step
    gives that step's rows; None gives every step.
    """
    if window is not None and window not in PERFORMANCE_WINDOWS:
        raise ValueError(f"window must be one of {PERFORMANCE_WINDOWS}, found {window!r}")
    if step is not None and step < 0:
        raise ValueError(f"step must be >= 0 (0 = all steps), found {step}")
    # a refresh rewrites only the rows of the series whose scores changed; the others reflect the same watermark
    columns = [f"p.{name}" for name in PERFORMANCE_COLUMNS if name != "refreshed_from"]
    sql = f"""
        SELECT {", ".join(columns)}, coalesce(s.refreshed_from, p.refreshed_from) AS refreshed_from
        FROM signal_performance p LEFT JOIN performance_state s ON s.timeframe = p.timeframe
        WHERE (%(symbol)s::text IS NULL OR p.symbol = %(symbol)s)
          AND (%(model)s::text IS NULL OR p.model_name = %(model)s)
          AND (%(timeframe)s::text IS NULL OR p.timeframe = %(timeframe)s)
          AND (%(window)s::text IS NULL OR p.window_name = %(window)s)
          AND (%(step)s::int IS NULL OR p.step = %(step)s)
        ORDER BY p.symbol, p.timeframe, p.model_name, p.window_name, p.step"""
    params = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "window": window, "step": step}
    names, rows = read_rows(bind, sql, params)
    return [PerformanceRow(**dict(zip(names, row, strict=True))) for row in rows]


def calibration(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: str = "all",
) -> list[CalibrationRow]:
    """Per (model, timeframe): how often the realised close fell below each stored quantile, over the scored
    steps of the forecasts in ``window`` (as in ``signal_performance``), and the histogram of their PITs in
    ``PIT_BINS`` equal bins (``pit_counts``; a PIT of exactly 1 cannot occur, ``scores.randomized_pit``)."""
    if window not in PERFORMANCE_WINDOWS:
        raise ValueError(f"window must be one of {PERFORMANCE_WINDOWS}, found {window!r}")
    in_window = ""
    if window == "trailing_30d":  # forecasts made in the span before the newest scored one of their group
        in_window = f"""JOIN (
            SELECT symbol, timeframe, model_name, max(as_of) AS newest FROM signal_evaluations n
            WHERE {_group_filter("n")} GROUP BY symbol, timeframe, model_name
        ) g ON g.symbol = e.symbol AND g.timeframe = e.timeframe AND g.model_name = e.model_name
            AND e.as_of > g.newest - %(span)s::interval"""
    sql = f"""
        SELECT e.model_name, e.timeframe, count(*) AS n_steps,
            avg((e.realised_close < e.p10)::int)::float8 AS below_p10,
            avg((e.realised_close < e.p50)::int)::float8 AS below_p50,
            avg((e.realised_close < e.p90)::int)::float8 AS below_p90,
            avg(e.in_band::int)::float8 AS in_band,
            avg(e.in_band_raw::int)::float8 AS in_band_raw,
            count(e.pit) AS n_pit,
            ARRAY[{_PIT_BINS}]::int8[] AS pit_counts
        FROM signal_evaluations e {in_window}
        WHERE {_group_filter("e")}
        GROUP BY e.model_name, e.timeframe
        ORDER BY e.model_name, e.timeframe"""
    params = {
        "symbol": symbol, "model": model_name, "timeframe": timeframe, "span": TRAILING_WINDOW,
    }  # fmt: skip
    names, rows = read_rows(bind, sql, params)
    return [CalibrationRow(**dict(zip(names, row, strict=True))) for row in rows]


PIT_BINS = 10  # tenths of (0, 1)
_PIT_BINS = ", ".join(
    f"count(*) FILTER (WHERE width_bucket(e.pit, 0, 1, {PIT_BINS}) = {k})" for k in range(1, PIT_BINS + 1)
)


def _group_filter(alias: str) -> str:
    return (
        f"(%(symbol)s::text IS NULL OR {alias}.symbol = %(symbol)s) "
        f"AND (%(model)s::text IS NULL OR {alias}.model_name = %(model)s) "
        f"AND (%(timeframe)s::text IS NULL OR {alias}.timeframe = %(timeframe)s)"
    )


# -- the refresh: inputs and replacement -----------------------------------------------------------


@dataclass(frozen=True)
class ScoredSteps:
    """Every scored step of one timeframe as columns (one entry per ``signal_evaluations`` row, in no
    particular order); ``group`` indexes ``groups``, the (symbol, model) pairs."""

    group: np.ndarray  # int64
    step: np.ndarray  # int32
    as_of: np.ndarray  # int64, raw Postgres timestamp (microseconds since 2000-01-01 UTC)
    direction_hit: np.ndarray  # bool
    in_band: np.ndarray  # bool
    in_band_raw: np.ndarray  # bool
    crps: np.ndarray  # float64, NaN = none
    crps_rw: np.ndarray  # float64, NaN = none
    crps_relative: np.ndarray  # float64, crps / last close (NaN = none)
    pinball: np.ndarray  # float64, mean of the three pinball losses
    strategy_return: np.ndarray  # float64
    groups: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.step)


_SCORED_FIELDS = (
    ("prediction_id", ">i8"),
    ("step", ">i4"),
    ("as_of", ">i8"),
    ("direction_hit", "?"),
    ("in_band", "?"),
    ("in_band_raw", "?"),
    ("crps", ">f8"),
    ("crps_rw", ">f8"),
    ("crps_relative", ">f8"),
    ("pinball", ">f8"),
    ("strategy_return", ">f8"),
)


def lock_performance(conn: Connection) -> None:
    """Serialise refreshes of ``signal_performance`` for the rest of the caller's transaction; readers are
    never blocked (the lock conflicts with writers only)."""
    conn.exec_driver_sql("LOCK TABLE signal_performance IN SHARE ROW EXCLUSIVE MODE")


def scored_steps(
    conn: Connection,
    timeframe: str,
    since: datetime | None = None,
    windows: Sequence[tuple[str, str, datetime]] | None = None,
) -> ScoredSteps:
    """The scored steps of ``timeframe`` (one binary COPY), each with the (symbol, model) of its forecast: all of
    them, those of forecasts made at or after ``since``, or (``windows``: (symbol, model, start) triples) those of
    each listed (symbol, model) made after its start. Reads only the partitions of the months asked for.

    Two statements: run it in a REPEATABLE READ transaction so that both see the same data.
    """
    if windows is not None:
        scope = """ AND EXISTS (
            SELECT 1 FROM unnest(%(w_symbols)s::text[], %(w_models)s::text[], %(w_starts)s::timestamptz[])
                AS w(symbol, model_name, start)
            WHERE w.symbol = t.symbol AND w.model_name = t.model_name AND t.as_of > w.start)
            AND t.as_of > %(w_min)s"""
    else:
        scope = " AND (%(since)s::timestamptz IS NULL OR t.as_of >= %(since)s)"
    params: dict[str, object] = {"tf": timeframe, "since": since}
    if windows is not None:
        params.update(
            w_symbols=[w[0] for w in windows], w_models=[w[1] for w in windows], w_starts=[w[2] for w in windows],
            w_min=min((w[2] for w in windows), default=None),
        )  # fmt: skip
    sql = f"""
        COPY (
            SELECT prediction_id, step, as_of, direction_hit, in_band, in_band_raw, coalesce(crps, 'NaN'),
                coalesce(crps_rw, 'NaN'), coalesce(crps / nullif(last_close, 0), 'NaN'),
                (pinball_10 + pinball_50 + pinball_90) / 3, strategy_return
            FROM signal_evaluations t WHERE timeframe = %(tf)s{scope}
        ) TO STDOUT (FORMAT binary)"""
    payload = bytearray()
    with cursor(conn) as cur:
        cur.execute("SET LOCAL jit = off")
        if windows is not None and not windows:
            labels: list[tuple] = []
        else:
            with cur.copy(sql, params) as copy:
                while data := copy.read():
                    payload += data
            cur.execute(
                "SELECT symbol, model_name, array_agg(id) FROM ml_predictions t WHERE timeframe = %(tf)s"
                f"{scope} GROUP BY symbol, model_name ORDER BY symbol, model_name",
                params,
            )
            labels = cur.fetchall()
    rows = decode_binary_copy(bytes(payload), _SCORED_FIELDS)
    ids = np.concatenate([np.asarray(row[2], dtype=np.int64) for row in labels]) if labels else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(len(labels)), [len(row[2]) for row in labels])
    order = np.argsort(ids)
    prediction_id = rows["prediction_id"].astype(np.int64)
    position = np.searchsorted(ids[order], prediction_id)
    if len(prediction_id) and not np.array_equal(ids[order][np.minimum(position, len(ids) - 1)], prediction_id):
        raise RuntimeError("scores of forecasts that do not exist (read outside one REPEATABLE READ snapshot?)")
    columns = {name: rows[name].astype(dtype.lstrip("><")) for name, dtype in _SCORED_FIELDS[1:]}
    return ScoredSteps(group=owner[order][position], **columns, groups=[(row[0], row[1]) for row in labels])


# -- the incremental refresh's bookkeeping (migration 0012) ---------------------------------------------------


def read_performance_state(conn: Connection, timeframe: str) -> datetime | None:
    """When ``timeframe``'s rows were last rebuilt from all scores; None: never (the next refresh is a full one)."""
    with cursor(conn) as cur:
        cur.execute("SELECT built_at FROM performance_state WHERE timeframe = %s", (timeframe,))
        row = cur.fetchone()
    return None if row is None else row[0]


def write_performance_state(conn: Connection, timeframe: str, refreshed_from: datetime | None, rebuilt: bool) -> None:
    """Record a refresh of ``timeframe``: the scoring watermark every one of its rows now reflects, and (``rebuilt``)
    that it was a rebuild from all scores."""
    with cursor(conn) as cur:
        cur.execute(
            "INSERT INTO performance_state (timeframe, refreshed_from) VALUES (%s, %s) ON CONFLICT (timeframe) "
            "DO UPDATE SET refreshed_from = EXCLUDED.refreshed_from" + (", built_at = now()" if rebuilt else ""),
            (timeframe, refreshed_from),
        )


SeriesKey = tuple[str, str]  # (symbol, model_name)


def read_performance_summaries(
    conn: Connection, timeframe: str, series: Sequence[SeriesKey] | None = None
) -> dict[SeriesKey, tuple[datetime, bytes]]:
    """The stored summaries (``jobs.performance_state``) of the listed series of ``timeframe`` (None: all), each
    with the origin they run up to (``through``)."""
    sql = "SELECT symbol, model_name, through, state FROM performance_summaries s WHERE timeframe = %(tf)s"
    if series is not None:
        sql += " AND (symbol, model_name) IN (SELECT * FROM unnest(%(symbols)s::text[], %(models)s::text[]))"
    params = {"tf": timeframe, "symbols": [p[0] for p in series or ()], "models": [p[1] for p in series or ()]}
    with cursor(conn) as cur:
        cur.execute(sql, params)
        return {(row[0], row[1]): (row[2], bytes(row[3])) for row in cur.fetchall()}


def count_performance_summaries(conn: Connection, timeframe: str) -> int:
    """How many series of ``timeframe`` have stored summaries."""
    with cursor(conn) as cur:
        cur.execute("SELECT count(*) FROM performance_summaries WHERE timeframe = %s", (timeframe,))
        row = cur.fetchone()
    return 0 if row is None else int(row[0])


def write_performance_summaries(
    conn: Connection,
    timeframe: str,
    summaries: Mapping[SeriesKey, tuple[datetime, bytes] | None],
    replace_all: bool = False,
) -> None:
    """Store the summaries of these series of ``timeframe`` (None: the series has none any more, its row goes);
    ``replace_all``: every other series' row goes too."""
    with cursor(conn) as cur:
        if replace_all:
            cur.execute("DELETE FROM performance_summaries WHERE timeframe = %s", (timeframe,))
        gone = [pair for pair, value in summaries.items() if value is None]
        if gone and not replace_all:
            cur.execute(
                "DELETE FROM performance_summaries WHERE timeframe = %s AND (symbol, model_name) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                (timeframe, [p[0] for p in gone], [p[1] for p in gone]),
            )
        kept = [(timeframe, p[0], p[1], v[0], v[1]) for p, v in summaries.items() if v is not None]
        if kept:
            cur.executemany(
                "INSERT INTO performance_summaries (timeframe, symbol, model_name, through, state) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (timeframe, symbol, model_name) DO UPDATE SET "
                "through = EXCLUDED.through, state = EXCLUDED.state, updated_at = now()",
                kept,
            )


@dataclass(frozen=True)
class PerformanceChanges:
    """The logged changes of one timeframe's scores: their ids, and the oldest origin changed per series (all
    series, ``everything``, after a TRUNCATE)."""

    ids: list[int]
    oldest: dict[SeriesKey, datetime]
    everything: bool


def performance_changes(conn: Connection, timeframe: str) -> PerformanceChanges:
    """The logged changes of ``timeframe``'s scores (``performance_changes``)."""
    with cursor(conn) as cur:
        cur.execute(
            "SELECT id, symbol, model_name, min_as_of = '-infinity' OR symbol IS NULL, "
            "greatest(min_as_of, timestamptz '0001-01-01 00:00:00+00') FROM performance_changes WHERE timeframe = %s",
            (timeframe,),
        )
        rows = cur.fetchall()
    oldest: dict[SeriesKey, datetime] = {}
    for _, symbol, model, _, first in rows:
        if symbol is not None:
            pair = (symbol, model)
            oldest[pair] = min(first, oldest.get(pair, first))
    return PerformanceChanges([int(row[0]) for row in rows], oldest, any(row[3] for row in rows))


def forget_performance_changes(conn: Connection, ids: Sequence[int]) -> None:
    with cursor(conn) as cur:
        cur.execute("DELETE FROM performance_changes WHERE id = ANY(%s::int8[])", (list(ids),))


def oldest_backlog_origin(conn: Connection, timeframe: str) -> datetime | None:
    """The origin of the oldest forecast of ``timeframe`` still in the scoring backlog."""
    with cursor(conn) as cur:
        cur.execute(
            "SELECT min(p.as_of) FROM scoring_backlog b JOIN ml_predictions p ON p.id = b.prediction_id "
            "WHERE b.timeframe = %s",
            (timeframe,),
        )
        row = cur.fetchone()
    return None if row is None else row[0]


def replace_performance(
    conn: Connection,
    timeframe: str,
    rows: Sequence[Mapping[str, object]],
    refreshed_from: datetime | None,
    series: Sequence[SeriesKey] | None = None,
) -> int:
    """Replace the ``timeframe`` rows of ``signal_performance`` (only those of ``series``, (symbol, model) pairs,
    when given) with ``rows`` (mappings with the ``PERFORMANCE_COLUMNS`` except ``timeframe`` and
    ``refreshed_from``; NaN is stored as NULL). Runs in the caller's transaction (which should hold
    ``lock_performance``). Returns the number of rows written.

    Listeners of ``ml_predictions`` (the gateway) are notified at commit, with no symbol: every cached
    answer carries a track record read from this table, so all are stale now."""
    with cursor(conn) as cur:
        if series is None:
            cur.execute("DELETE FROM signal_performance WHERE timeframe = %s", (timeframe,))
        elif series:
            cur.execute(
                "DELETE FROM signal_performance p USING unnest(%s::text[], %s::text[]) AS s(symbol, model_name) "
                "WHERE p.timeframe = %s AND p.symbol = s.symbol AND p.model_name = s.model_name",
                ([pair[0] for pair in series], [pair[1] for pair in series], timeframe),
            )
        cur.execute("SELECT pg_notify('ml_predictions', %s)", (json.dumps({"performance": timeframe}),))
        with cur.copy(f"COPY signal_performance ({', '.join(PERFORMANCE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                values = {**row, "timeframe": timeframe, "refreshed_from": refreshed_from}
                copy.write_row([_sql_value(values[name]) for name in PERFORMANCE_COLUMNS])
    return len(rows)


def _sql_value(value: object) -> object:
    """numpy scalars as Python values, NaN as NULL."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
