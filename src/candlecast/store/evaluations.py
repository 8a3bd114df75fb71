"""Forecast scores: what is left to score, the bulk write of ``signal_evaluations``, and the scoring
backlog and watermark (the performance table is written and read in ``store.performance``).

The scoring job moves millions of (prediction, step) rows, so both directions use binary COPY decoded and
encoded with numpy structured arrays (no per-row Python; rows are grouped so each group is fixed-width).
Scoring works in chunks of forecasts: ``scoring_candidates`` lists them, ``unscored_steps`` and
``prediction_samples`` read one chunk, ``write_evaluations`` stores its scores and takes the finished
forecasts out of the backlog.

A step is scoreable when the candle at its target timestamp exists and had closed by the scoring time
(``target_ts + timeframe <= as_of``). Forecasts to look at come from ``scoring_backlog`` (migration 0007):
every forecast enters it when written or rewritten, and leaves it once *settled*, when each step is scored
or its candle is missing although the instrument has a later closed candle (a weekend, a holiday, a gap in
the data). So an unscored step is found whatever the forecast's age, and a run costs what is pending, not
the history. A candle loaded later into an old gap is not noticed by the backlog: a re-check of the
forecasts made since some time (``scoring_candidates(..., since=...)``, ``candlecast score --since``)
finds those steps.

``scoring_state.scored_through`` is the latest as-of time a scoring run of the timeframe reached: every
step whose candle had closed by then is scored, except those of forecasts rewritten since.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import binary_copy, decode_binary_copy
from candlecast.store._sql import connection, cursor, read_frame, read_rows
from candlecast.store.candles import closed_cutoff, timeframe_delta
from candlecast.store.partitions import ensure_partitions, month_of
from candlecast.store.schema import candle_table

__all__ = [
    "EVALUATION_SCORE_FIELDS",
    "StepsToScore",
    "Written",
    "advance_scored_through",
    "closes_before",
    "count_evaluations",
    "evaluations_frame",
    "forecast_runs",
    "prediction_samples",
    "reopen_forecasts",
    "scored_through",
    "scoring_backlog_ids",
    "scoring_candidates",
    "unscored_steps",
    "write_evaluations",
]

_FLOAT4_ARRAY_OID = 1021
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # raw Postgres timestamps count microseconds from here
_US_PER_DAY = 86_400_000_000
# These statements touch many rows with simple expressions; Postgres' JIT compiler, which kicks in on their
# (large) cost estimates, spent more time compiling than it saved (measured: ~0.25 s per statement).
_NO_JIT = "SET LOCAL jit = off"


# -- what to score ---------------------------------------------------------------------------------


def scoring_candidates(
    bind: Engine | Connection, timeframe: str, as_of: datetime, since: datetime | None = None
) -> np.ndarray:
    """Ids (ascending) of the ``timeframe`` forecasts made by ``as_of`` that may have steps to score: those
    in the scoring backlog, or, given ``since``, every forecast made in ``[since, as_of]`` (a re-check)."""
    if since is None:
        sql = """
            SELECT b.prediction_id FROM scoring_backlog b JOIN ml_predictions p ON p.id = b.prediction_id
            WHERE b.timeframe = %(tf)s AND p.as_of <= %(as_of)s ORDER BY 1"""
    else:
        sql = """
            SELECT id FROM ml_predictions
            WHERE timeframe = %(tf)s AND as_of BETWEEN %(since)s AND %(as_of)s ORDER BY id"""
    _, rows = read_rows(bind, sql, {"tf": timeframe, "as_of": as_of, "since": since})
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def scoring_backlog_ids(bind: Engine | Connection, timeframe: str | None = None) -> list[int]:
    """The forecasts in the scoring backlog (all timeframes, or one), ascending."""
    _, rows = read_rows(
        bind,
        "SELECT prediction_id FROM scoring_backlog WHERE (%(tf)s::text IS NULL OR timeframe = %(tf)s) ORDER BY 1",
        {"tf": timeframe},
    )
    return [int(r[0]) for r in rows]


@dataclass(frozen=True)
class StepsToScore:
    """Unscored, scoreable steps as columns (all arrays have one entry per step), and the forecasts that are
    settled once these steps are stored.

    ``generated_at`` (raw Postgres timestamp: microseconds since 2000-01-01 UTC) identifies the version of
    the forecast that was read, so a slot rewritten while scoring runs never receives scores of the numbers it
    replaced (nor leaves the backlog).
    """

    prediction_id: np.ndarray  # int64
    step: np.ndarray  # int32, 1-based
    generated_at: np.ndarray  # int64, raw Postgres timestamp
    as_of: np.ndarray  # int64, raw Postgres timestamp
    target_ts: np.ndarray  # int64, raw Postgres timestamp
    last_close: np.ndarray  # float64
    realised_close: np.ndarray  # float64
    p10: np.ndarray  # float64, the served band
    p50: np.ndarray  # float64
    p90: np.ndarray  # float64
    p10_raw: np.ndarray  # float64, the model's own band (p10_raw, or p10 where the forecast stores none)
    p90_raw: np.ndarray  # float64
    # prediction id -> (symbol, timeframe, model_name)
    labels: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    # forecasts with nothing left to score after these steps: ids and their generated_at (raw)
    settled_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    settled_generated_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.prediction_id)


_STEP_FIELDS = (
    ("prediction_id", ">i8"),
    ("step", ">i4"),
    ("generated_at", ">i8"),
    ("as_of", ">i8"),
    ("target_ts", ">i8"),
    ("last_close", ">f8"),
    ("realised_close", ">f8"),
    ("p10", ">f8"),
    ("p50", ">f8"),
    ("p90", ">f8"),
    ("p10_raw", ">f8"),
    ("p90_raw", ">f8"),
)


def unscored_steps(
    bind: Engine | Connection, timeframe: str, as_of: datetime, ids: np.ndarray | list[int]
) -> StepsToScore:
    """Of the forecasts ``ids`` made by ``as_of``: the steps that have no score yet and whose target candle
    exists and had closed by ``as_of``, ordered by (prediction, step), with the forecasts that will have
    nothing left to score once these are stored (each unscored step's candle closed by ``as_of``, or
    missing although a later candle of the instrument had closed)."""
    table = candle_table(timeframe).name
    sql = f"""
        COPY (
            -- The forecasts, each with the steps already scored (one index probe per forecast; MATERIALIZED
            -- keeps the planner from probing once per step when statistics are stale).
            WITH todo AS MATERIALIZED (
                SELECT p.id, p.symbol, p.generated_at, p.as_of, p.last_close, p.target_ts, p.p10, p.p50, p.p90,
                    p.p10_raw, p.p90_raw, s.done
                FROM ml_predictions p
                CROSS JOIN LATERAL (
                    SELECT coalesce(array_agg(e.step), '{{}}') AS done FROM signal_evaluations e
                    WHERE e.prediction_id = p.id) s
                WHERE p.id = ANY(%(ids)s::int8[]) AND p.timeframe = %(tf)s AND p.as_of <= %(as_of)s
            ), newest AS MATERIALIZED (  -- each instrument's newest candle closed by as_of
                SELECT n.symbol, (SELECT max(c.ts) FROM {table} c WHERE c.symbol = n.symbol AND c.ts <= %(cutoff)s)
                    AS ts
                FROM (SELECT DISTINCT symbol FROM todo) n
            )
            SELECT t.id, g.step::int4, t.generated_at, t.as_of, g.target_ts, t.last_close, c.close,
                coalesce(t.p10[g.step], 'NaN'), coalesce(t.p50[g.step], 'NaN'), coalesce(t.p90[g.step], 'NaN'),
                coalesce(t.p10_raw[g.step], t.p10[g.step], 'NaN'), coalesce(t.p90_raw[g.step], t.p90[g.step], 'NaN')
            FROM todo t
            CROSS JOIN LATERAL unnest(t.target_ts) WITH ORDINALITY AS g(target_ts, step)
            JOIN {table} c ON c.symbol = t.symbol AND c.ts = g.target_ts
            WHERE g.target_ts <= %(cutoff)s AND NOT g.step = ANY(t.done)
            UNION ALL
            -- one marker row (step 0) per forecast settled by this run
            SELECT t.id, 0, t.generated_at, t.as_of, t.as_of, 'NaN', 'NaN', 'NaN', 'NaN', 'NaN', 'NaN', 'NaN'
            FROM todo t JOIN newest n ON n.symbol = t.symbol
            WHERE NOT EXISTS (
                SELECT 1 FROM unnest(t.target_ts) WITH ORDINALITY AS g(target_ts, step)
                WHERE NOT g.step = ANY(t.done) AND g.target_ts > coalesce(n.ts, '-infinity'))
        ) TO STDOUT (FORMAT binary)"""
    params = {
        "tf": timeframe,
        "as_of": as_of,
        "ids": np.asarray(ids, dtype=np.int64).tolist(),
        "cutoff": closed_cutoff(timeframe, as_of),
    }
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute(_NO_JIT)
            with cur.copy(sql, params) as copy:
                payload = b"".join(bytes(chunk) for chunk in copy)
    rows = decode_binary_copy(payload, _STEP_FIELDS)
    rows = rows[np.lexsort((rows["step"], rows["prediction_id"]))]  # by forecast, then step
    marker = rows["step"] == 0
    settled = rows[marker]
    rows = rows[~marker]
    steps = {name: rows[name].astype(dtype[1:]) for name, dtype in _STEP_FIELDS}
    labels: list[tuple] = []
    if len(rows):
        _, labels = read_rows(
            bind,
            "SELECT id, symbol, timeframe, model_name FROM ml_predictions WHERE id = ANY(%(ids)s)",
            {"ids": np.unique(steps["prediction_id"]).tolist()},
        )
    return StepsToScore(
        **steps,
        labels={int(row[0]): (row[1], row[2], row[3]) for row in labels},
        settled_id=settled["prediction_id"].astype(np.int64),
        settled_generated_at=settled["generated_at"].astype(np.int64),
    )


def closes_before(
    bind: Engine | Connection, timeframe: str, ids: np.ndarray | list[int], candles: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each instrument of the forecasts ``ids``: its candles from the ``candles``-th last closed by the
    earliest of those forecasts' origins up to the last closed by the latest origin, as (open time, raw
    Postgres timestamp; close) arrays in time order. Enough history to look back ``candles`` candles from
    any of the origins (fewer where the series starts later)."""
    table = candle_table(timeframe).name
    sql = f"""
        COPY (
            WITH spans AS MATERIALIZED (
                SELECT (row_number() OVER (ORDER BY symbol))::int4 AS k, symbol,
                    min(as_of) - %(candle)s::interval AS first_cutoff, max(as_of) - %(candle)s::interval AS last_cutoff
                FROM ml_predictions WHERE id = ANY(%(ids)s::int8[]) GROUP BY symbol
            )
            SELECT s.k, c.ts, c.close
            FROM spans s
            CROSS JOIN LATERAL (
                SELECT coalesce((
                    SELECT b.ts FROM {table} b WHERE b.symbol = s.symbol AND b.ts <= s.first_cutoff
                    ORDER BY b.ts DESC OFFSET %(back)s LIMIT 1), '-infinity') AS start
            ) f
            JOIN {table} c ON c.symbol = s.symbol AND c.ts BETWEEN f.start AND s.last_cutoff
        ) TO STDOUT (FORMAT binary)"""
    id_list = np.asarray(ids, dtype=np.int64).tolist()
    params = {"ids": id_list, "candle": timeframe_delta(timeframe), "back": candles - 1}
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute(_NO_JIT)
            with cur.copy(sql, params) as copy:
                payload = b"".join(bytes(chunk) for chunk in copy)
            cur.execute(
                "SELECT DISTINCT symbol FROM ml_predictions WHERE id = ANY(%(ids)s::int8[]) ORDER BY symbol",
                {"ids": id_list},
            )
            symbols = [row[0] for row in cur.fetchall()]
    rows = decode_binary_copy(payload, (("k", ">i4"), ("ts", ">i8"), ("close", ">f8")))
    rows = rows[np.lexsort((rows["ts"], rows["k"]))]
    bounds = np.searchsorted(rows["k"], np.arange(1, len(symbols) + 2))
    return {
        symbol: (rows["ts"][lo:hi].astype(np.int64), rows["close"][lo:hi].astype(np.float64))
        for symbol, lo, hi in zip(symbols, bounds[:-1], bounds[1:], strict=True)
    }


class _Float4ArrayToNumpy(Loader):
    """Loads a ``real[]`` / ``real[][]`` in binary form straight into a float32 numpy array."""

    format = Format.BINARY

    def load(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        buf = bytes(data)
        ndim, has_null, _oid = struct.unpack_from(">iii", buf, 0)
        dims = [struct.unpack_from(">i", buf, 12 + 8 * d)[0] for d in range(ndim)]
        count = int(np.prod(dims)) if ndim else 0
        start = 12 + 8 * ndim
        if has_null:  # rare: decode element by element, NULL -> NaN
            values, pos = [], start
            for _ in range(count):
                (size,) = struct.unpack_from(">i", buf, pos)
                pos += 4
                if size < 0:
                    values.append(np.nan)
                else:
                    values.append(struct.unpack_from(">f", buf, pos)[0])
                    pos += size
            flat = np.asarray(values, dtype=np.float32)
        else:
            pairs = np.frombuffer(buf, dtype=np.dtype([("n", ">i4"), ("v", ">f4")]), count=count, offset=start)
            flat = pairs["v"].astype(np.float32)
        return flat.reshape(dims) if ndim else flat


def prediction_samples(
    bind: Engine | Connection,
    ids: np.ndarray | list[int],
    first_step: np.ndarray | list[int] | None = None,
    last_step: np.ndarray | list[int] | None = None,
) -> dict[int, np.ndarray]:
    """The stored sample paths, ``(sample_count, pred_len)`` float32, of the forecasts ``ids`` that have
    samples; with ``first_step`` and ``last_step`` (1-based, one pair per id) only the columns of steps
    ``first_step[i]..last_step[i]`` of forecast ``ids[i]``, ``(sample_count, last - first + 1)`` (fewer where the
    forecast is shorter). Postgres slices the arrays, so a scoring run that scores one new step of each pending
    forecast moves one column of each, not the whole paths (bench/score.py --steady)."""
    params: dict[str, object] = {"ids": np.asarray(ids, dtype=np.int64).tolist()}
    if first_step is None or last_step is None:
        sql = "SELECT id, samples FROM ml_predictions WHERE id = ANY(%(ids)s::int8[]) AND samples IS NOT NULL"
    else:
        # id = ANY as well as the join: each partition is then read through its primary key, as without ranges
        sql = """SELECT p.id, p.samples[:][r.first:r.last]
                 FROM ml_predictions p
                 JOIN unnest(%(ids)s::int8[], %(first)s::int4[], %(last)s::int4[]) AS r(id, first, last) ON r.id = p.id
                 WHERE p.id = ANY(%(ids)s::int8[]) AND p.samples IS NOT NULL"""
        params["first"] = np.asarray(first_step, dtype=np.int64).tolist()
        params["last"] = np.asarray(last_step, dtype=np.int64).tolist()
    with connection(bind) as conn:
        with cursor(conn, binary=True) as cur:
            cur.adapters.register_loader(_FLOAT4_ARRAY_OID, _Float4ArrayToNumpy)
            cur.execute(sql, params)
            return {int(pid): samples for pid, samples in cur.fetchall() if samples is not None}


# -- writing scores --------------------------------------------------------------------------------

# The score columns the job computes, besides what ``StepsToScore`` carries.
EVALUATION_SCORE_FIELDS: tuple[str, ...] = (
    "direction_hit",
    "in_band",  # of the served band
    "in_band_raw",  # of the model's own band (p10_raw/p90_raw; the served band where none is stored)
    "crps",  # fair estimator; NaN = no samples -> NULL
    "crps_rw",  # the random-walk reference; NaN = not enough history -> NULL
    "pit",  # randomized PIT of the outcome in the samples; NaN = no samples -> NULL
    "pinball_10",
    "pinball_50",
    "pinball_90",
    "realised_return",
    "strategy_return",
)
# signal_evaluations columns written by COPY (scored_at takes its default), with their binary types; text
# columns get their width per group of rows.
_EVALUATION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("prediction_id", ">i8"),
    ("step", ">i4"),
    ("symbol", "text"),
    ("timeframe", "text"),
    ("model_name", "text"),
    ("as_of", ">i8"),
    ("target_ts", ">i8"),
    ("last_close", ">f8"),
    ("realised_close", ">f8"),
    ("p10", ">f8"),
    ("p50", ">f8"),
    ("p90", ">f8"),
    ("direction_hit", "?"),
    ("in_band", "?"),
    ("in_band_raw", "?"),
    ("crps", ">f8"),
    ("crps_rw", ">f8"),
    ("pit", ">f8"),
    ("pinball_10", ">f8"),
    ("pinball_50", ">f8"),
    ("pinball_90", ">f8"),
    ("realised_return", ">f8"),
    ("strategy_return", ">f8"),
)


@dataclass(frozen=True)
class Written:
    steps: int  # score rows written
    settled: int  # forecasts taken out of the scoring backlog


def write_evaluations(conn: Connection, steps: StepsToScore, scores: dict[str, np.ndarray]) -> Written:
    """Store the scores of ``steps`` (arrays named in ``EVALUATION_SCORE_FIELDS``) and take the forecasts
    ``steps`` found settled out of the scoring backlog.

    Runs in the caller's transaction. The forecasts are share-locked first and those rewritten since
    ``steps`` was read (their ``generated_at`` changed) are left out, so a concurrent rewrite of a slot
    (which deletes its scores and puts the forecast back in the backlog) either commits before, and its old
    numbers are neither scored nor settled, or waits for this transaction. Rows go in with one binary COPY.
    The steps must be unscored: the caller holds the scoring lock of the timeframe (``jobs.scoring``), and a
    duplicate fails the transaction.
    """
    ids, first = np.unique(steps.prediction_id, return_index=True)
    ids = np.r_[ids, steps.settled_id]
    generated = np.r_[steps.generated_at[first], steps.settled_generated_at]
    if not len(ids):
        return Written(0, 0)
    with cursor(conn) as cur:
        cur.execute(_NO_JIT)
        cur.execute(
            "SELECT p.id FROM ml_predictions p "
            "JOIN (SELECT DISTINCT * FROM unnest(%(ids)s::int8[], %(generated)s::int8[])) AS s(id, generated) "
            "ON p.id = s.id "
            "AND p.generated_at = timestamptz '2000-01-01 00:00:00+00' + s.generated * interval '1 microsecond' "
            "ORDER BY p.id FOR SHARE OF p",
            {"ids": ids.tolist(), "generated": generated.tolist()},
        )
        unchanged = np.fromiter((row[0] for row in cur.fetchall()), dtype=np.int64)
        keep = np.isin(steps.prediction_id, unchanged)
        if keep.any():
            months = np.unique(steps.as_of[keep] // _US_PER_DAY)  # days since 2000-01-01, then their months
            ensure_partitions(conn, "signal_evaluations", {month_of(_EPOCH + timedelta(days=int(d))) for d in months})
            names = ", ".join(name for name, _ in _EVALUATION_COLUMNS)
            with cur.copy(f"COPY signal_evaluations ({names}) FROM STDIN (FORMAT binary)") as copy:
                copy.write(_evaluation_rows(steps, scores, keep))
            # the incremental performance refresh learns which series gained scores, from which origin on
            # (store.performance)
            oldest: dict[tuple[str, str, str], int] = {}
            kept_ids, first_step = np.unique(steps.prediction_id[keep], return_index=True)  # one origin a forecast
            for pid, as_of in zip(kept_ids.tolist(), steps.as_of[keep][first_step].tolist(), strict=True):
                series = steps.labels[pid]
                oldest[series] = min(as_of, oldest.get(series, as_of))
            cur.executemany(
                "INSERT INTO performance_changes (timeframe, symbol, model_name, min_as_of) VALUES (%s, %s, %s, %s)",
                [(tf, symbol, model, _EPOCH + timedelta(microseconds=first))
                 for (symbol, tf, model), first in sorted(oldest.items())],
            )  # fmt: skip
        settled = steps.settled_id[np.isin(steps.settled_id, unchanged)]
        if len(settled):
            cur.execute("DELETE FROM scoring_backlog WHERE prediction_id = ANY(%s::int8[])", (settled.tolist(),))
        return Written(int(keep.sum()), len(settled))


def _evaluation_rows(steps: StepsToScore, scores: dict[str, np.ndarray], keep: np.ndarray) -> bytes:
    """The binary COPY stream of the kept rows (a NaN CRPS or PIT is written as NULL)."""
    ids = steps.prediction_id[keep]
    forecasts, owner = forecast_runs(ids)  # labels are per forecast, spread to its steps
    text = {}
    for k, name in enumerate(("symbol", "timeframe", "model_name")):
        text[name] = np.array([steps.labels[pid][k].encode() for pid in forecasts.tolist()], dtype=bytes)[owner]
    values: dict[str, np.ndarray] = {
        "prediction_id": ids, "step": steps.step[keep], "as_of": steps.as_of[keep],
        "target_ts": steps.target_ts[keep], "last_close": steps.last_close[keep],
        "realised_close": steps.realised_close[keep], "p10": steps.p10[keep], "p50": steps.p50[keep],
        "p90": steps.p90[keep], **{name: scores[name][keep] for name in EVALUATION_SCORE_FIELDS}, **text,
    }  # fmt: skip
    return binary_copy([(name, kind, values[name]) for name, kind in _EVALUATION_COLUMNS])


def reopen_forecasts(conn: Connection, timeframe: str, until: datetime, since: datetime | None = None) -> int:
    """Delete the scores of the ``timeframe`` forecasts made in ``[since, until]`` (``since`` None: any time up
    to ``until``) and put those forecasts back in the scoring backlog, to be scored afresh (after a change of
    the scoring definitions). Returns the number of scores deleted. Runs in the caller's transaction."""
    sql = """
        WITH chosen AS MATERIALIZED (
            SELECT id, timeframe FROM ml_predictions
            WHERE timeframe = %(tf)s AND as_of <= %(until)s AND (%(since)s::timestamptz IS NULL OR as_of >= %(since)s)
        ), queued AS (
            INSERT INTO scoring_backlog (prediction_id, timeframe) SELECT id, timeframe FROM chosen
            ON CONFLICT (prediction_id) DO NOTHING
        ), touches AS (  -- graded touch questions (path_evaluations) are asked again too
            DELETE FROM path_evaluations t USING chosen c WHERE t.prediction_id = c.id
        )
        DELETE FROM signal_evaluations e USING chosen c WHERE e.prediction_id = c.id"""
    with cursor(conn) as cur:
        cur.execute(_NO_JIT)
        cur.execute(sql, {"tf": timeframe, "since": since, "until": until})
        return cur.rowcount


def advance_scored_through(conn: Connection, timeframe: str, as_of: datetime) -> None:
    """Record that scoring of ``timeframe`` reached ``as_of`` (the watermark never moves back)."""
    conn.exec_driver_sql(
        "INSERT INTO scoring_state (timeframe, scored_through) VALUES (%(tf)s, %(as_of)s) "
        "ON CONFLICT (timeframe) DO UPDATE SET scored_through = greatest(scoring_state.scored_through, "
        "EXCLUDED.scored_through), updated_at = now()",
        {"tf": timeframe, "as_of": as_of},
    )


def scored_through(bind: Engine | Connection, timeframe: str) -> datetime | None:
    """The latest as-of time scoring of ``timeframe`` has reached (None: never scored)."""
    _, rows = read_rows(bind, "SELECT scored_through FROM scoring_state WHERE timeframe = %(tf)s", {"tf": timeframe})
    return rows[0][0] if rows else None


# -- reading scores --------------------------------------------------------------------------------


def evaluations_frame(bind: Engine | Connection, prediction_id: int | None = None) -> pd.DataFrame:
    """Stored scores (all, or of one forecast), ordered by (prediction_id, step)."""
    return read_frame(
        bind,
        "SELECT * FROM signal_evaluations WHERE (%(id)s::int8 IS NULL OR prediction_id = %(id)s) "
        "ORDER BY prediction_id, step",
        {"id": prediction_id},
    )


def count_evaluations(bind: Engine | Connection, timeframe: str | None = None) -> int:
    _, rows = read_rows(
        bind,
        "SELECT count(*) FROM signal_evaluations WHERE (%(tf)s::text IS NULL OR timeframe = %(tf)s)",
        {"tf": timeframe},
    )
    return int(rows[0][0])


# -- binary COPY with numpy ------------------------------------------------------------------------


def forecast_runs(prediction_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ids sorted in runs (all steps of a forecast together): the distinct ids in order, and for each
    entry the index of its id in that list. O(n), unlike ``np.unique``'s sort."""
    if not len(prediction_ids):
        return prediction_ids[:0], np.zeros(0, dtype=np.int64)
    starts = np.r_[True, prediction_ids[1:] != prediction_ids[:-1]]
    return prediction_ids[starts], np.cumsum(starts) - 1
