"""Forecast scores: reads for the scoring job, the bulk write of ``signal_evaluations``, and the
``signal_performance`` materialised view refresh (its reads are in ``store.performance``).

The scoring job moves millions of (prediction, step) rows, so both directions use binary COPY decoded and
encoded with numpy structured arrays (no per-row Python; rows are grouped so each group is fixed-width).
Scoring works in chunks of predictions: ``prediction_id_ranges`` splits the candidates,
``unscored_steps`` and ``prediction_samples`` read one chunk, ``write_evaluations`` stores its scores.

A step is scoreable when the candle at its target timestamp exists and had closed by the scoring time
(``target_ts + timeframe <= as_of``); steps whose candle never prints (weekends, holidays) are simply never
scored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import binary_copy, decode_binary_copy
from candlecast.store._sql import connection, cursor, read_frame, read_rows
from candlecast.store.candles import closed_cutoff
from candlecast.store.schema import candle_table

__all__ = [
    "EVALUATION_SCORE_FIELDS",
    "StepsToScore",
    "count_evaluations",
    "forecast_runs",
    "evaluations_frame",
    "prediction_id_ranges",
    "prediction_samples",
    "refresh_performance",
    "unscored_steps",
    "write_evaluations",
]

_FLOAT4_ARRAY_OID = 1021
# These statements touch many rows with simple expressions; Postgres' JIT compiler, which kicks in on their
# (large) cost estimates, spent more time compiling than it saved (measured: ~0.25 s per statement).
_NO_JIT = "SET LOCAL jit = off"


# -- reading what to score -------------------------------------------------------------------------


@dataclass(frozen=True)
class StepsToScore:
    """Unscored, scoreable steps as columns (all arrays have one entry per step).

    ``generated_at`` (raw Postgres timestamp: microseconds since 2000-01-01 UTC) identifies the version of
    the forecast that was read, so a slot rewritten while scoring runs never receives scores of the numbers it
    replaced.
    """

    prediction_id: np.ndarray  # int64
    step: np.ndarray  # int32, 1-based
    generated_at: np.ndarray  # int64, raw Postgres timestamp
    as_of: np.ndarray  # int64, raw Postgres timestamp
    target_ts: np.ndarray  # int64, raw Postgres timestamp
    last_close: np.ndarray  # float64
    realised_close: np.ndarray  # float64
    p10: np.ndarray  # float64
    p50: np.ndarray  # float64
    p90: np.ndarray  # float64
    # prediction id -> (symbol, timeframe, model_name)
    labels: dict[int, tuple[str, str, str]] = field(default_factory=dict)

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
)


def prediction_id_ranges(
    bind: Engine | Connection, timeframe: str, since: datetime, until: datetime, chunk: int
) -> list[tuple[int, int]]:
    """Inclusive id ranges of at most ``chunk`` predictions each, over the forecasts of ``timeframe`` made
    in ``[since, until]``."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, found {chunk}")
    sql = "SELECT id FROM ml_predictions WHERE timeframe = %(tf)s AND as_of BETWEEN %(since)s AND %(until)s ORDER BY id"
    _, rows = read_rows(bind, sql, {"tf": timeframe, "since": since, "until": until})
    ids = [r[0] for r in rows]
    return [(ids[i], ids[min(i + chunk, len(ids)) - 1]) for i in range(0, len(ids), chunk)]


def unscored_steps(
    bind: Engine | Connection,
    timeframe: str,
    as_of: datetime,
    since: datetime,
    id_range: tuple[int, int] | None = None,
) -> StepsToScore:
    """Steps of forecasts made in ``[since, as_of]`` (optionally with ids in ``id_range``) that have no
    score yet and whose target candle exists and had closed by ``as_of``; ordered by (prediction, step)."""
    table = candle_table(timeframe).name
    lo, hi = id_range if id_range is not None else (None, None)
    sql = f"""
        COPY (
            -- First the forecasts with steps left to score, each with the steps already scored (one index probe
            -- per forecast; MATERIALIZED keeps the planner from probing once per step when statistics are stale).
            WITH todo AS MATERIALIZED (
                SELECT p.id, p.symbol, p.generated_at, p.as_of, p.last_close, p.target_ts, p.p10, p.p50, p.p90,
                    s.done
                FROM ml_predictions p
                CROSS JOIN LATERAL (
                    SELECT coalesce(array_agg(e.step), '{{}}') AS done FROM signal_evaluations e
                    WHERE e.prediction_id = p.id) s
                WHERE p.timeframe = %(tf)s AND p.as_of BETWEEN %(since)s AND %(as_of)s
                  AND (%(lo)s::int8 IS NULL OR p.id BETWEEN %(lo)s AND %(hi)s)
                  AND cardinality(s.done) < p.pred_len
            )
            SELECT t.id, g.step::int4, t.generated_at, t.as_of, g.target_ts, t.last_close, c.close,
                coalesce(t.p10[g.step], 'NaN'), coalesce(t.p50[g.step], 'NaN'), coalesce(t.p90[g.step], 'NaN')
            FROM todo t
            CROSS JOIN LATERAL unnest(t.target_ts) WITH ORDINALITY AS g(target_ts, step)
            JOIN {table} c ON c.symbol = t.symbol AND c.ts = g.target_ts
            WHERE g.target_ts <= %(cutoff)s AND NOT g.step = ANY(t.done)
            ORDER BY t.id, g.step
        ) TO STDOUT (FORMAT binary)"""
    params = {
        "tf": timeframe,
        "since": since,
        "as_of": as_of,
        "lo": lo,
        "hi": hi,
        "cutoff": closed_cutoff(timeframe, as_of),
    }
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute(_NO_JIT)
            with cur.copy(sql, params) as copy:
                payload = b"".join(bytes(chunk) for chunk in copy)
    rows = decode_binary_copy(payload, _STEP_FIELDS)
    steps = {name: rows[name].astype(dtype[1:]) for name, dtype in _STEP_FIELDS}
    ids = np.unique(steps["prediction_id"]).tolist()
    _, labels = read_rows(
        bind, "SELECT id, symbol, timeframe, model_name FROM ml_predictions WHERE id = ANY(%(ids)s)", {"ids": ids}
    )
    return StepsToScore(**steps, labels={int(row[0]): (row[1], row[2], row[3]) for row in labels})


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


def prediction_samples(bind: Engine | Connection, id_range: tuple[int, int]) -> dict[int, np.ndarray]:
    """The stored sample paths, ``(sample_count, pred_len)`` float32, of the forecasts with ids in
    ``id_range`` that have samples."""
    sql = "SELECT id, samples FROM ml_predictions WHERE id BETWEEN %s AND %s AND samples IS NOT NULL"
    with connection(bind) as conn:
        with cursor(conn, binary=True) as cur:
            cur.adapters.register_loader(_FLOAT4_ARRAY_OID, _Float4ArrayToNumpy)
            cur.execute(sql, id_range)
            return {int(pid): samples for pid, samples in cur.fetchall()}


# -- writing scores --------------------------------------------------------------------------------

# The score columns the job computes, besides what ``StepsToScore`` carries.
EVALUATION_SCORE_FIELDS: tuple[str, ...] = (
    "direction_hit",
    "in_band",
    "crps",  # NaN = no samples -> NULL
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
    ("crps", ">f8"),
    ("pinball_10", ">f8"),
    ("pinball_50", ">f8"),
    ("pinball_90", ">f8"),
    ("realised_return", ">f8"),
    ("strategy_return", ">f8"),
)


def write_evaluations(conn: Connection, steps: StepsToScore, scores: dict[str, np.ndarray]) -> int:
    """Store the scores of ``steps`` (arrays named in ``EVALUATION_SCORE_FIELDS``); returns the rows written.

    Runs in the caller's transaction. The forecasts are share-locked first and those rewritten since
    ``steps`` was read (their ``generated_at`` changed) are left out, so a concurrent rewrite of a slot
    (which deletes its scores) either commits before, and its old numbers are not scored, or waits for this
    transaction. Rows go in with one binary COPY. The steps must be unscored: the caller holds the scoring
    lock of the timeframe (``jobs.scoring``), and a duplicate fails the transaction.
    """
    if not len(steps):
        return 0
    ids, first = np.unique(steps.prediction_id, return_index=True)
    with cursor(conn) as cur:
        cur.execute(_NO_JIT)
        cur.execute(
            "SELECT p.id FROM ml_predictions p "
            "JOIN unnest(%(ids)s::int8[], %(generated)s::int8[]) AS s(id, generated) ON p.id = s.id "
            "AND p.generated_at = timestamptz '2000-01-01 00:00:00+00' + s.generated * interval '1 microsecond' "
            "ORDER BY p.id FOR SHARE OF p",
            {"ids": ids.tolist(), "generated": steps.generated_at[first].tolist()},
        )
        unchanged = np.fromiter((row[0] for row in cur.fetchall()), dtype=np.int64)
        keep = np.isin(steps.prediction_id, unchanged)
        if not keep.any():
            return 0
        names = ", ".join(name for name, _ in _EVALUATION_COLUMNS)
        with cur.copy(f"COPY signal_evaluations ({names}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(_evaluation_rows(steps, scores, keep))
        return int(keep.sum())


def _evaluation_rows(steps: StepsToScore, scores: dict[str, np.ndarray], keep: np.ndarray) -> bytes:
    """The binary COPY stream of the kept rows (a NaN CRPS is written as NULL)."""
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


# -- the performance view --------------------------------------------------------------------------


def refresh_performance(engine: Engine, concurrently: bool = True) -> None:
    """Recompute ``signal_performance``; concurrently (the default), readers are never blocked."""
    mode = "CONCURRENTLY " if concurrently else ""
    with engine.begin() as conn:
        conn.exec_driver_sql(_NO_JIT)
        conn.exec_driver_sql(f"REFRESH MATERIALIZED VIEW {mode}signal_performance")


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
