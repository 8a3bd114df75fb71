"""Graded touch questions (``path_evaluations``, migration 0013): which forecasts are ready to be asked, with
their paths and what happened; the idempotent write of the grades; the reads that summarise them; and their
stored summary (``path_performance``, migration 0014).

A forecast is ready once every candle of its horizon is stored and had closed by the scoring time, and it has no
grades yet. The scoring job (``jobs.touches``) asks it the questions of ``paths.TOUCH_GRID`` and writes one row per
(forecast, level) in the transaction that writes its step scores; a forecast rewritten since it was read is left
out (its ``generated_at`` changed), and a row that exists already is kept, so grading again writes nothing.

``path_performance`` holds, per (scope, model, timeframe, window), how the graded questions scored
(``paths.touch_scores``): scope is a symbol, or ``ALL_SYMBOLS`` (``'*'``) for every symbol together. The scoring
job computes the rows (``jobs.touches.refresh_path_performance``) from ``graded_touches_by_symbol`` and stores them
with ``replace_path_performance``, one timeframe per transaction, so a reader (``path_performance``: the
evaluation page, ``GET /api/v1/performance``) sees the old rows or the new ones, never a half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import decode_binary_copy
from candlecast.store._sql import connection, cursor, read_frame, read_rows
from candlecast.store.candles import closed_cutoff
from candlecast.store.evaluations import _FLOAT4_ARRAY_OID, _Float4ArrayToNumpy
from candlecast.store.performance import PERFORMANCE_WINDOWS, TRAILING_WINDOW
from candlecast.store.schema import candle_table

__all__ = [
    "ALL_SYMBOLS",
    "PATH_EVALUATION_FIELDS",
    "PATH_PERFORMANCE_COLUMNS",
    "ForecastToGrade",
    "GradedTouches",
    "PathPerformanceRow",
    "forecasts_to_grade",
    "graded_touches",
    "graded_touches_by_symbol",
    "lock_path_performance",
    "path_evaluations_frame",
    "path_performance",
    "replace_path_performance",
    "write_path_evaluations",
]

ALL_SYMBOLS = "*"  # the ``scope`` of a ``path_performance`` row that takes every symbol together


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
    """Graded touch questions of one (model, timeframe), as columns, in no particular order; from
    ``graded_touches_by_symbol`` also each question's symbol and whether it is in the trailing window."""

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
    symbols: tuple[str, ...] = ()  # graded_touches_by_symbol: the symbols ``symbol`` indexes
    symbol: np.ndarray | None = None  # int32 index into ``symbols``
    recent: np.ndarray | None = None  # bool: in the ``trailing_30d`` window of its symbol

    @property
    def uses(self) -> dict[str, int]:
        """Questions per basis."""
        n = int(self.ohlc.sum())
        return {name: count for name, count in (("ohlc", n), ("close", len(self.ohlc) - n)) if count}

    def __len__(self) -> int:
        return len(self.prediction_id)

    def subset(self, mask: np.ndarray) -> GradedTouches:
        """The questions where ``mask`` (bool, one entry per question) is true, in the same order."""
        columns: dict[str, Any] = {}
        for name in _PER_QUESTION:
            values = getattr(self, name)
            columns[name] = None if values is None else values[mask]
        return replace(self, **columns)


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
_GRADED_COLUMNS = """e.prediction_id, e.k::int4, e.as_of, e.horizon, e.p_touch, e.p_touch_rw, e.paths, e.touched,
    e.uses = 'ohlc'"""
_BY_SYMBOL_FIELDS = (*_GRADED_FIELDS, ("symbol", ">i4"), ("recent", "?"))
_PER_QUESTION = tuple(name for name, _ in _BY_SYMBOL_FIELDS)  # the columns ``subset`` masks
_WHERE = (
    "(%(symbol)s::text IS NULL OR e.symbol = %(symbol)s) AND (%(model)s::text IS NULL OR e.model_name = %(model)s) "
    "AND (%(timeframe)s::text IS NULL OR e.timeframe = %(timeframe)s)"
)
# per symbol, its newest graded forecast: the trailing window is the span before it
_NEWEST = f"SELECT e.symbol, max(e.as_of) AS newest FROM path_evaluations e WHERE {_WHERE} GROUP BY e.symbol"


def _copy_columns(cur: psycopg.Cursor[Any], sql: str, params: Mapping[str, object], fields: tuple) -> dict:
    """The rows of the binary COPY ``sql`` as numpy columns named by ``fields``."""
    payload = bytearray()
    with cur.copy(sql, params) as copy:
        while data := copy.read():
            payload += data
    rows = decode_binary_copy(bytes(payload), fields)
    return {name: rows[name].astype(kind.lstrip("><")) for name, kind in fields}


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
    params: dict[str, object] = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "span": TRAILING_WINDOW}
    out = []
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute("SET LOCAL jit = off")
            cur.execute(
                f"SELECT e.model_name, e.timeframe FROM path_evaluations e WHERE {_WHERE} GROUP BY 1, 2 ORDER BY 1, 2",
                params,
            )
            groups = cur.fetchall()
            for model, tf in groups:
                one = {**params, "model": model, "timeframe": tf}
                recent = ""
                if window == "trailing_30d":  # within the span before the newest graded forecast of the symbol
                    recent = f"JOIN ({_NEWEST}) n ON n.symbol = e.symbol AND e.as_of > n.newest - %(span)s::interval"
                sql = f"COPY (SELECT {_GRADED_COLUMNS} FROM path_evaluations e {recent} WHERE {_WHERE}) TO STDOUT"
                sql += " (FORMAT binary)"
                columns = _copy_columns(cur, sql, one, _GRADED_FIELDS)
                out.append(GradedTouches(model_name=str(model), timeframe=str(tf), **columns))
    return out


def graded_touches_by_symbol(conn: Connection, timeframe: str) -> list[GradedTouches]:
    """Every graded touch question of ``timeframe``, per model, each with its symbol and whether it lies in its
    symbol's ``trailing_30d`` window (the same SQL as ``graded_touches``): one binary COPY per model, from which
    every subset ``graded_touches`` would read (per symbol or all, either window) is a mask.

    Several statements: run it in a REPEATABLE READ transaction so that all see the same data."""
    params: dict[str, object] = {"symbol": None, "model": None, "timeframe": timeframe, "span": TRAILING_WINDOW}
    out = []
    with cursor(conn) as cur:
        cur.execute("SET LOCAL jit = off")
        cur.execute(
            f"SELECT e.model_name, array_agg(DISTINCT e.symbol) FROM path_evaluations e WHERE {_WHERE} "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        groups = cur.fetchall()
        for model, symbols in groups:
            names = tuple(sorted(symbols))
            one = {**params, "model": model, "symbols": list(names)}
            sql = f"""COPY (
                SELECT {_GRADED_COLUMNS}, n.code::int4 - 1, e.as_of > n.newest - %(span)s::interval
                FROM path_evaluations e
                JOIN (SELECT w.symbol, w.newest, s.code FROM ({_NEWEST}) w
                    JOIN unnest(%(symbols)s::text[]) WITH ORDINALITY AS s(symbol, code) ON s.symbol = w.symbol
                ) n ON n.symbol = e.symbol
                WHERE {_WHERE}) TO STDOUT (FORMAT binary)"""
            columns = _copy_columns(cur, sql, one, _BY_SYMBOL_FIELDS)
            out.append(GradedTouches(model_name=str(model), timeframe=timeframe, symbols=names, **columns))
    return out


# -- path_performance: the stored summary -----------------------------------------------------------

# The columns of a ``path_performance`` row besides ``refreshed_at``.
PATH_PERFORMANCE_COLUMNS: tuple[str, ...] = (
    "scope", "model_name", "timeframe", "window_name", "forecasts", "questions", "grid", "uses", "brier",
    "brier_plain", "brier_rw", "skill", "dm_stat", "dm_pvalue", "base_rate", "reliability", "decomposition",
    "first_as_of", "last_as_of",
)  # fmt: skip
_JSON_COLUMNS = frozenset({"uses", "reliability", "decomposition"})


@dataclass(frozen=True)
class PathPerformanceRow:
    """How the graded touch questions of one (scope, model, timeframe, window) scored (``paths.TouchScore``)."""

    scope: str  # a symbol, or ALL_SYMBOLS
    model_name: str
    timeframe: str
    window_name: str
    forecasts: int
    questions: int
    grid: list[int]  # the levels asked, in random-walk standard deviations over the horizon
    uses: dict[str, int]  # questions per basis: 'ohlc' (highs/lows), 'close'
    brier: float | None  # None: NaN (e.g. no random-walk Brier to compare with)
    brier_plain: float | None
    brier_rw: float | None
    skill: float | None
    dm_stat: float | None
    dm_pvalue: float | None
    base_rate: float | None
    reliability: dict[str, list[Any]]  # lower, upper, count, mean_predicted, observed (None: an empty bin)
    decomposition: dict[str, float | None]  # reliability, resolution, uncertainty, base_rate
    first_as_of: datetime  # the oldest and newest forecast origin graded
    last_as_of: datetime
    refreshed_at: datetime


def lock_path_performance(conn: Connection) -> None:
    """Serialise refreshes of ``path_performance`` for the rest of the caller's transaction; readers are never
    blocked (the lock conflicts with writers only)."""
    conn.exec_driver_sql("LOCK TABLE path_performance IN SHARE ROW EXCLUSIVE MODE")


def replace_path_performance(conn: Connection, timeframe: str, rows: Sequence[Mapping[str, object]]) -> int:
    """Replace every ``timeframe`` row of ``path_performance`` with ``rows`` (mappings with the
    ``PATH_PERFORMANCE_COLUMNS`` except ``timeframe``; the nested ones JSON-ready, NaN as None; a float NaN is
    stored as NULL). Runs in the caller's transaction (which should hold ``lock_path_performance``). Returns the
    number of rows written.

    No NOTIFY: the answers that show these rows (``/api/v1/performance``) are cached for a time, not per symbol."""
    names = list(PATH_PERFORMANCE_COLUMNS)
    with cursor(conn) as cur:
        cur.execute("DELETE FROM path_performance WHERE timeframe = %s", (timeframe,))
        with cur.copy(f"COPY path_performance ({', '.join(names)}) FROM STDIN") as copy:
            for row in rows:
                values = {**row, "timeframe": timeframe}
                copy.write_row([_sql_value(name, values[name]) for name in names])
    return len(rows)


def _sql_value(name: str, value: object) -> object:
    if name in _JSON_COLUMNS:
        return Jsonb(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def path_performance(
    bind: Engine | Connection,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: str = "all",
) -> list[PathPerformanceRow]:
    """The stored summaries of ``symbol``'s graded questions (None: every symbol together), of every model and
    timeframe or those asked for, in ``window``; ordered by model, then timeframe."""
    if window not in PERFORMANCE_WINDOWS:
        raise ValueError(f"window must be one of {PERFORMANCE_WINDOWS}, found {window!r}")
    sql = """
        SELECT * FROM path_performance p
        WHERE p.scope = %(scope)s AND p.window_name = %(window)s
          AND (%(model)s::text IS NULL OR p.model_name = %(model)s)
          AND (%(timeframe)s::text IS NULL OR p.timeframe = %(timeframe)s)
        ORDER BY p.model_name, p.timeframe"""
    params = {"scope": ALL_SYMBOLS if symbol is None else symbol, "model": model_name, "timeframe": timeframe,
              "window": window}  # fmt: skip
    names, rows = read_rows(bind, sql, params)
    return [PathPerformanceRow(**dict(zip(names, row, strict=True))) for row in rows]
