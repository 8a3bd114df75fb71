"""Graded touch questions (``path_evaluations``, migration 0013): which forecasts are ready to be asked, with
their paths and what happened; the idempotent write of the grades; the reads the evaluation page summarises.

A forecast is ready once every candle of its horizon is stored and had closed by the scoring time, and it has no
grades yet. The scoring job (``jobs.touches``) asks it the questions of ``paths.TOUCH_GRID`` and writes one row per
(forecast, level) in the transaction that writes its step scores; a forecast rewritten since it was read is left
out (its ``generated_at`` changed), and a row that exists already is kept, so grading again writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import decode_binary_copy
from candlecast.store._sql import connection, cursor, read_frame, read_rows
from candlecast.store.candles import closed_cutoff
from candlecast.store.evaluations import _FLOAT4_ARRAY_OID, _Float4ArrayToNumpy
from candlecast.store.performance import PERFORMANCE_WINDOWS, TRAILING_WINDOW
from candlecast.store.schema import candle_table

__all__ = [
    "PATH_EVALUATION_FIELDS",
    "ForecastToGrade",
    "GradedTouches",
    "forecasts_to_grade",
    "graded_touches",
    "path_evaluations_frame",
    "write_path_evaluations",
]


@dataclass(frozen=True)
class ForecastToGrade:
    """One forecast whose horizon has passed: its paths and its realised candles (``None`` arrays: not stored)."""

    prediction_id: int
    symbol: str
    timeframe: str
    model_name: str
    generated_at: datetime  # the version that was read
    as_of: datetime
    last_close: float
    horizon: int
    samples: np.ndarray | None  # (M, H) closes, the served (calibrated) paths
    samples_high: np.ndarray | None  # (M, H), models that give OHLC paths
    samples_low: np.ndarray | None
    realised_close: np.ndarray  # (H,)
    realised_high: np.ndarray | None  # (H,); None where a candle has no high or low (close-only bars)
    realised_low: np.ndarray | None = field(default=None)


def forecasts_to_grade(
    bind: Engine | Connection, timeframe: str, as_of: datetime, ids: np.ndarray | list[int]
) -> tuple[list[ForecastToGrade], int]:
    """Of the forecasts ``ids`` made by ``as_of`` that have no graded touch question: those whose horizon had
    passed by ``as_of`` with every candle stored, and how many had passed with a candle missing (they cannot
    be graded: which level was touched is not known)."""
    table = candle_table(timeframe).name
    sql = f"""
        SELECT p.id, p.symbol, p.timeframe, p.model_name, p.generated_at, p.as_of, p.last_close, p.pred_len,
            r.n, r.closes, r.highs, r.lows
        FROM ml_predictions p
        CROSS JOIN LATERAL (
            SELECT count(c.ts) AS n, array_agg(c.close ORDER BY g.i) AS closes, array_agg(c.high ORDER BY g.i) AS highs,
                array_agg(c.low ORDER BY g.i) AS lows
            FROM unnest(p.target_ts) WITH ORDINALITY AS g(ts, i)
            LEFT JOIN {table} c ON c.symbol = p.symbol AND c.ts = g.ts
        ) r
        WHERE p.id = ANY(%(ids)s::int8[]) AND p.timeframe = %(tf)s AND p.as_of <= %(as_of)s
          AND p.target_ts[p.pred_len] <= %(cutoff)s
          AND NOT EXISTS (SELECT 1 FROM path_evaluations e WHERE e.prediction_id = p.id)
        ORDER BY p.id"""
    params = {
        "ids": np.asarray(ids, dtype=np.int64).tolist(), "tf": timeframe, "as_of": as_of,
        "cutoff": closed_cutoff(timeframe, as_of),
    }  # fmt: skip
    _, rows = read_rows(bind, sql, params)
    complete = [row for row in rows if row[8] == row[7]]
    paths = _paths(bind, [row[0] for row in complete])
    out = []
    for pid, symbol, tf, model, generated, origin, c0, horizon, _n, closes, highs, lows in complete:
        extremes = None not in highs and None not in lows
        samples, high, low = paths.get(int(pid), (None, None, None))
        out.append(ForecastToGrade(
            prediction_id=int(pid), symbol=symbol, timeframe=tf, model_name=model, generated_at=generated,
            as_of=origin, last_close=float(c0), horizon=int(horizon), samples=samples, samples_high=high,
            samples_low=low, realised_close=np.asarray(closes, dtype=np.float64),
            realised_high=np.asarray(highs, dtype=np.float64) if extremes else None,
            realised_low=np.asarray(lows, dtype=np.float64) if extremes else None,
        ))  # fmt: skip
    return out, len(rows) - len(complete)


def _paths(
    bind: Engine | Connection, ids: list[int]
) -> dict[int, tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]:
    if not ids:
        return {}
    sql = "SELECT id, samples, samples_high, samples_low FROM ml_predictions WHERE id = ANY(%s::int8[])"
    with connection(bind) as conn:
        with cursor(conn, binary=True) as cur:
            cur.adapters.register_loader(_FLOAT4_ARRAY_OID, _Float4ArrayToNumpy)
            cur.execute(sql, (ids,))
            return {int(row[0]): (row[1], row[2], row[3]) for row in cur.fetchall()}


# The columns of a grade besides the forecast's labels (``write_path_evaluations``), one array entry per row.
PATH_EVALUATION_FIELDS: tuple[str, ...] = (
    "prediction_id", "k", "horizon", "level", "side", "p_touch", "p_touch_rw", "paths", "touched", "uses",
)  # fmt: skip


def write_path_evaluations(conn: Connection, grades: Mapping[str, np.ndarray], forecasts: list[ForecastToGrade]) -> int:
    """Store the grades (arrays named in ``PATH_EVALUATION_FIELDS``) of ``forecasts``; returns the rows written.

    Runs in the caller's transaction. The forecasts are share-locked first and the grades of those rewritten
    since they were read (``generated_at`` changed) are left out; a (forecast, k) already graded is kept as it
    is (``ON CONFLICT DO NOTHING``), so writing the same grades again writes nothing.
    """
    if not forecasts or not len(grades["prediction_id"]):
        return 0
    with cursor(conn) as cur:
        cur.execute(
            "SELECT p.id FROM ml_predictions p "
            "JOIN unnest(%(ids)s::int8[], %(generated)s::timestamptz[]) AS s(id, generated) "
            "ON p.id = s.id AND p.generated_at = s.generated ORDER BY p.id FOR SHARE OF p",
            {"ids": [f.prediction_id for f in forecasts], "generated": [f.generated_at for f in forecasts]},
        )
        unchanged = np.fromiter((row[0] for row in cur.fetchall()), dtype=np.int64)
        keep = np.isin(np.asarray(grades["prediction_id"], dtype=np.int64), unchanged)
        if not keep.any():
            return 0
        cur.execute(
            """
            INSERT INTO path_evaluations (prediction_id, k, symbol, timeframe, model_name, as_of, horizon, level,
                side, p_touch, p_touch_rw, paths, touched, uses)
            SELECT g.prediction_id, g.k, p.symbol, p.timeframe, p.model_name, p.as_of, g.horizon, g.level, g.side,
                g.p_touch, g.p_touch_rw, g.paths, g.touched, g.uses
            FROM unnest(%(prediction_id)s::int8[], %(k)s::int2[], %(horizon)s::int4[], %(level)s::float8[],
                %(side)s::text[], %(p_touch)s::float8[], %(p_touch_rw)s::float8[], %(paths)s::int4[],
                %(touched)s::bool[], %(uses)s::text[])
                AS g(prediction_id, k, horizon, level, side, p_touch, p_touch_rw, paths, touched, uses)
            JOIN ml_predictions p ON p.id = g.prediction_id
            ON CONFLICT (prediction_id, k) DO NOTHING""",
            {name: np.asarray(grades[name])[keep].tolist() for name in PATH_EVALUATION_FIELDS},
        )
        return int(cur.rowcount)


def path_evaluations_frame(bind: Engine | Connection, prediction_id: int | None = None) -> pd.DataFrame:
    """Stored grades (all, or of one forecast), ordered by (prediction_id, k)."""
    return read_frame(
        bind,
        "SELECT * FROM path_evaluations WHERE (%(id)s::int8 IS NULL OR prediction_id = %(id)s) "
        "ORDER BY prediction_id, k",
        {"id": prediction_id},
    )


@dataclass(frozen=True)
class GradedTouches:
    """Graded touch questions of one (model, timeframe), as columns, in no particular order."""

    model_name: str
    timeframe: str
    prediction_id: np.ndarray  # int64
    k: np.ndarray  # int32: the level, in random-walk standard deviations over the horizon
    as_of: np.ndarray  # int64, raw Postgres timestamp (microseconds since 2000-01-01 UTC)
    horizon: np.ndarray  # int32
    p_touch: np.ndarray  # float64
    p_touch_rw: np.ndarray
    paths: np.ndarray  # int32
    touched: np.ndarray  # bool
    ohlc: np.ndarray  # bool: judged on highs/lows (uses = 'ohlc'), else on closes

    @property
    def uses(self) -> dict[str, int]:
        """Questions per basis."""
        n = int(self.ohlc.sum())
        return {name: count for name, count in (("ohlc", n), ("close", len(self.ohlc) - n)) if count}


_GRADED_FIELDS = (
    ("prediction_id", ">i8"),
    ("k", ">i4"),
    ("as_of", ">i8"),
    ("horizon", ">i4"),
    ("p_touch", ">f8"),
    ("p_touch_rw", ">f8"),
    ("paths", ">i4"),
    ("touched", "?"),
    ("ohlc", "?"),
)


def graded_touches(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: str = "all",
) -> list[GradedTouches]:
    """The graded touch questions per (model, timeframe), filtered by whichever arguments are given; ``window``
    as in ``signal_performance`` (``trailing_30d``: the forecasts made in the 30 days before the newest graded
    one of the same symbol, timeframe and model). One binary COPY per (model, timeframe), decoded with numpy
    and in no particular order (a year of hourly grades of 23 instruments is about a million rows a model)."""
    if window not in PERFORMANCE_WINDOWS:
        raise ValueError(f"window must be one of {PERFORMANCE_WINDOWS}, found {window!r}")
    where = (
        "(%(symbol)s::text IS NULL OR e.symbol = %(symbol)s) AND (%(model)s::text IS NULL OR e.model_name = %(model)s) "
        "AND (%(timeframe)s::text IS NULL OR e.timeframe = %(timeframe)s)"
    )
    params: dict[str, object] = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "span": TRAILING_WINDOW}
    out = []
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute("SET LOCAL jit = off")
            cur.execute(
                f"SELECT e.model_name, e.timeframe FROM path_evaluations e WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
                params,
            )
            groups = cur.fetchall()
            for model, tf in groups:
                one = {**params, "model": model, "timeframe": tf}
                recent = ""
                if window == "trailing_30d":  # within the span before the newest graded forecast of the symbol
                    recent = f"""JOIN (SELECT e.symbol, max(e.as_of) AS newest FROM path_evaluations e WHERE {where}
                        GROUP BY e.symbol) n ON n.symbol = e.symbol AND e.as_of > n.newest - %(span)s::interval"""
                sql = f"""COPY (
                    SELECT e.prediction_id, e.k::int4, e.as_of, e.horizon, e.p_touch, e.p_touch_rw, e.paths, e.touched,
                        e.uses = 'ohlc'
                    FROM path_evaluations e {recent} WHERE {where}) TO STDOUT (FORMAT binary)"""
                payload = bytearray()
                with cur.copy(sql, one) as copy:
                    while data := copy.read():
                        payload += data
                rows = decode_binary_copy(bytes(payload), _GRADED_FIELDS)
                columns = {name: rows[name].astype(kind.lstrip("><")) for name, kind in _GRADED_FIELDS}
                out.append(GradedTouches(model_name=str(model), timeframe=str(tf), **columns))
    return out
