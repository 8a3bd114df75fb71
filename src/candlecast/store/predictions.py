"""Forecast rows (``ml_predictions``): one slot per (symbol, timeframe, model, as_of).

Writing a slot again replaces it (and drops the scores of the replaced forecast), so batch jobs
are idempotent. Every insert or update fires ``NOTIFY ml_predictions`` for gateway caches.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import decode_binary_copy, pg_microseconds
from candlecast.store._sql import connection, cursor, read_rows
from candlecast.store.candles import closed_cutoff, timeframe_delta
from candlecast.store.schema import candle_table

__all__ = [
    "CalibrationHistory",
    "Prediction",
    "calibration_history",
    "latest_prediction",
    "latest_predictions",
    "previous_slots",
    "upsert_prediction",
]


@dataclass
class Prediction:
    symbol: str
    timeframe: str
    model_name: str
    as_of: datetime
    target_ts: list[datetime]
    p10: np.ndarray  # (pred_len,)
    p50: np.ndarray  # (pred_len,)
    p90: np.ndarray  # (pred_len,)
    last_close: float
    model_version: str = ""
    samples: np.ndarray | None = None  # (sample_count, pred_len) sampled closes
    event_context: dict[str, Any] | None = None
    id: int | None = None
    generated_at: datetime | None = None
    # The model's own band when p10/p90 (and samples) hold a calibrated one; None: p10/p90 are the model's.
    p10_raw: np.ndarray | None = None
    p90_raw: np.ndarray | None = None
    calibration: dict[str, Any] | None = None  # how the served band was reached (jobs.calibrate)

    @property
    def pred_len(self) -> int:
        return len(self.target_ts)

    def __post_init__(self) -> None:
        for name in ("p10", "p50", "p90"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name in ("p10_raw", "p90_raw"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.samples is not None:
            self.samples = np.asarray(self.samples, dtype=np.float32)
        n = len(self.target_ts)
        bands = ("p10", "p50", "p90", "p10_raw", "p90_raw")
        shapes = {name: getattr(self, name).shape for name in bands if getattr(self, name) is not None}
        if any(shape != (n,) for shape in shapes.values()):
            raise ValueError(f"{'/'.join(shapes)} must each have {n} values (one per target), found {shapes}")
        if self.samples is not None and (self.samples.ndim != 2 or self.samples.shape[1] != n):
            raise ValueError(f"samples must have shape (sample_count, {n}), found {self.samples.shape}")


_COLUMNS = (
    "id, symbol, timeframe, model_name, model_version, generated_at, as_of, target_ts, "
    "p10, p50, p90, last_close, event_context, p10_raw, p90_raw, calibration"
)


def upsert_prediction(conn: Connection, p: Prediction) -> int:
    """Write the forecast of one slot, replacing a previous one; returns the row id.

    Runs in the caller's transaction. A replaced forecast's scores are deleted with it, because
    they scored numbers that no longer exist.
    """
    params = {
        "symbol": p.symbol,
        "timeframe": p.timeframe,
        "model_name": p.model_name,
        "model_version": p.model_version,
        "as_of": p.as_of,
        "pred_len": p.pred_len,
        "target_ts": list(p.target_ts),
        "p10": p.p10.tolist(),
        "p50": p.p50.tolist(),
        "p90": p.p90.tolist(),
        "samples": None if p.samples is None else p.samples.astype(np.float64).tolist(),
        "last_close": float(p.last_close),
        "event_context": None if p.event_context is None else json.dumps(p.event_context),
        "p10_raw": None if p.p10_raw is None else p.p10_raw.tolist(),
        "p90_raw": None if p.p90_raw is None else p.p90_raw.tolist(),
        "calibration": None if p.calibration is None else json.dumps(p.calibration),
    }
    sql = """
        INSERT INTO ml_predictions (symbol, timeframe, model_name, model_version, as_of, pred_len,
            target_ts, p10, p50, p90, samples, last_close, event_context, p10_raw, p90_raw, calibration)
        VALUES (%(symbol)s, %(timeframe)s, %(model_name)s, %(model_version)s, %(as_of)s, %(pred_len)s,
            %(target_ts)s, %(p10)s, %(p50)s, %(p90)s, %(samples)s, %(last_close)s, %(event_context)s::jsonb,
            %(p10_raw)s, %(p90_raw)s, %(calibration)s::jsonb)
        ON CONFLICT (symbol, timeframe, model_name, as_of) DO UPDATE SET
            model_version = EXCLUDED.model_version, generated_at = now(), pred_len = EXCLUDED.pred_len,
            target_ts = EXCLUDED.target_ts, p10 = EXCLUDED.p10, p50 = EXCLUDED.p50, p90 = EXCLUDED.p90,
            samples = EXCLUDED.samples, last_close = EXCLUDED.last_close,
            event_context = EXCLUDED.event_context, p10_raw = EXCLUDED.p10_raw, p90_raw = EXCLUDED.p90_raw,
            calibration = EXCLUDED.calibration
        RETURNING id"""
    with cursor(conn) as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        assert row is not None
        prediction_id = int(row[0])
        cur.execute("DELETE FROM signal_evaluations WHERE prediction_id = %s", (prediction_id,))
    return prediction_id


def latest_prediction(
    bind: Engine | Connection,
    symbol: str,
    model_name: str,
    timeframe: str,
    with_samples: bool = False,
    as_of: datetime | None = None,
) -> Prediction | None:
    """The newest forecast of a (symbol, model, timeframe), optionally the newest made by ``as_of``."""
    columns = _COLUMNS + (", samples" if with_samples else "")
    sql = (
        f"SELECT {columns} FROM ml_predictions WHERE symbol = %(symbol)s AND model_name = %(model)s "
        "AND timeframe = %(timeframe)s AND (%(as_of)s::timestamptz IS NULL OR as_of <= %(as_of)s) "
        "ORDER BY as_of DESC LIMIT 1"
    )
    params = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "as_of": as_of}
    names, rows = read_rows(bind, sql, params)
    return _to_prediction(dict(zip(names, rows[0], strict=True))) if rows else None


def latest_predictions(bind: Engine | Connection, timeframe: str | None = None) -> list[Prediction]:
    """The newest forecast of every (symbol, model, timeframe), without samples."""
    sql = (
        f"SELECT DISTINCT ON (symbol, model_name, timeframe) {_COLUMNS} FROM ml_predictions "
        "WHERE (%(timeframe)s::text IS NULL OR timeframe = %(timeframe)s) "
        "ORDER BY symbol, model_name, timeframe, as_of DESC"
    )
    names, rows = read_rows(bind, sql, {"timeframe": timeframe})
    return [_to_prediction(dict(zip(names, row, strict=True))) for row in rows]


def previous_slots(
    bind: Engine | Connection, model_name: str, timeframe: str, before: datetime, symbols: list[str]
) -> dict[str, datetime]:
    """The newest slot (as_of) strictly before ``before`` of each symbol that has one, for one model."""
    sql = """
        SELECT s.symbol, p.as_of FROM unnest(%(symbols)s::text[]) AS s(symbol)
        CROSS JOIN LATERAL (
            SELECT as_of FROM ml_predictions m
            WHERE m.symbol = s.symbol AND m.model_name = %(model)s AND m.timeframe = %(timeframe)s
              AND m.as_of < %(before)s
            ORDER BY as_of DESC LIMIT 1) p"""
    params = {"symbols": symbols, "model": model_name, "timeframe": timeframe, "before": before}
    _, rows = read_rows(bind, sql, params)
    return dict(rows)


def _to_prediction(row: dict[str, Any]) -> Prediction:
    samples = row.get("samples")
    return Prediction(
        id=row["id"],
        symbol=row["symbol"],
        timeframe=row["timeframe"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        generated_at=row["generated_at"],
        as_of=row["as_of"],
        target_ts=list(row["target_ts"]),
        p10=row["p10"],
        p50=row["p50"],
        p90=row["p90"],
        last_close=row["last_close"],
        event_context=row["event_context"],
        samples=None if samples is None else np.asarray(samples, dtype=np.float32),
        p10_raw=row.get("p10_raw"),
        p90_raw=row.get("p90_raw"),
        calibration=row.get("calibration"),
    )


# -- what calibration reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationHistory:
    """What a calibration of one (symbol, timeframe, model) slot may know: the realised steps of the earlier
    forecasts (one entry per forecast and step, ordered by forecast origin then step) and the candle closes
    behind their volatilities. Times are raw Postgres timestamps (int64 microseconds since 2000-01-01 UTC)."""

    origin: np.ndarray  # int64: the forecast's as_of
    step: np.ndarray  # int32, 1-based
    target_ts: np.ndarray  # int64: the open time of the realised candle
    last_close: np.ndarray  # float64: the forecast's last close
    realised: np.ndarray  # float64: the close of the target candle
    raw_lower: np.ndarray  # float64: the model's own p10 (p10_raw, or p10 where none is stored)
    raw_upper: np.ndarray
    served_lower: np.ndarray  # float64: the p10 that was served
    served_upper: np.ndarray
    governed: np.ndarray  # bool: the forecast's calibration (ACI) set the served band of this step
    candle_ts: np.ndarray  # int64, ascending: the instrument's candles up to the slot's last closed one
    candle_close: np.ndarray  # float64


# Arrays read straight into numpy: double precision[], timestamptz[] (as raw microseconds since 2000-01-01) and
# boolean[] (their type oids), by element type oid -> (element as sent, dtype returned).
_ARRAY_OIDS = (1022, 1185, 1000)
_ARRAY_DTYPES: dict[int, tuple[str, type]] = {701: (">f8", np.float64), 1184: (">i8", np.int64), 16: ("?", np.bool_)}


def calibration_history(
    bind: Engine | Connection,
    timeframe: str,
    model_name: str,
    as_of: datetime,
    symbols: Sequence[str],
    lookback: int,
    candles_back: int,
) -> dict[str, CalibrationHistory]:
    """For each of ``symbols``: the realised steps of its last ``lookback`` ``model_name`` forecasts made before
    ``as_of`` (``as_of`` strictly earlier), counting only target candles that had closed by ``as_of``, and its
    candles from ``candles_back`` candles before the oldest of those origins (or before ``as_of``) up to the
    last one closed by ``as_of``. Nothing that closed after ``as_of`` is read (a step whose candle closed later,
    or is not stored, is left out).

    A step counts as governed when the forecast's ``calibration`` has a number at that step in ``steps.alpha``
    (see ``jobs.calibrate``). One row per forecast with its arrays loaded straight into numpy, then one binary
    COPY of the candles.
    """
    table = candle_table(timeframe).name
    recent = """
        SELECT s.k::int4 AS k, s.symbol, m.*
        FROM unnest(%(symbols)s::text[]) WITH ORDINALITY AS s(symbol, k)
        CROSS JOIN LATERAL (
            SELECT p.as_of, p.last_close, p.target_ts, p.p10, p.p90, p.p10_raw, p.p90_raw, p.calibration
            FROM ml_predictions p
            WHERE p.symbol = s.symbol AND p.timeframe = %(tf)s AND p.model_name = %(model)s
              AND p.as_of < %(as_of)s
            ORDER BY p.as_of DESC LIMIT %(lookback)s) m"""
    forecasts_sql = f"""
        SELECT r.k, date_part('epoch', r.as_of - timestamptz '2000-01-01 00:00:00+00') * 1000000, r.last_close,
            r.target_ts, r.p10, r.p90, r.p10_raw, r.p90_raw, ARRAY(
                SELECT coalesce(jsonb_typeof(e.x) = 'number', false)
                FROM jsonb_array_elements(CASE WHEN jsonb_typeof(r.calibration -> 'steps' -> 'alpha') = 'array'
                    THEN r.calibration -> 'steps' -> 'alpha' ELSE '[]' END) WITH ORDINALITY AS e(x, i)
                ORDER BY e.i)
        FROM ({recent}) r
        ORDER BY r.k, r.as_of"""
    candles_sql = f"""
        COPY (
            WITH first AS MATERIALIZED (
                SELECT s.k::int4 AS k, s.symbol, coalesce(
                    (SELECT min(x.as_of) FROM ({recent}) x WHERE x.k = s.k), %(as_of)s) - %(candle)s::interval AS cutoff
                FROM unnest(%(symbols)s::text[]) WITH ORDINALITY AS s(symbol, k)
            )
            SELECT f.k, c.ts, c.close
            FROM first f
            CROSS JOIN LATERAL (
                SELECT coalesce((
                    SELECT b.ts FROM {table} b WHERE b.symbol = f.symbol AND b.ts <= f.cutoff
                    ORDER BY b.ts DESC OFFSET %(back)s LIMIT 1), '-infinity') AS start
            ) s
            JOIN {table} c ON c.symbol = f.symbol AND c.ts BETWEEN s.start AND %(cutoff)s
        ) TO STDOUT (FORMAT binary)"""
    cutoff = closed_cutoff(timeframe, as_of)
    params = {
        "symbols": list(symbols), "tf": timeframe, "model": model_name, "as_of": as_of, "lookback": lookback,
        "cutoff": cutoff, "candle": timeframe_delta(timeframe), "back": candles_back,
    }  # fmt: skip
    with connection(bind) as conn:
        with cursor(conn, binary=True) as cur:
            for oid in _ARRAY_OIDS:
                cur.adapters.register_loader(oid, _ArrayToNumpy)
            cur.execute(forecasts_sql, params)
            forecasts = cur.fetchall()
        with cursor(conn) as cur:
            with cur.copy(candles_sql, params) as copy:
                payload = b"".join(bytes(chunk) for chunk in copy)
    candles = decode_binary_copy(payload, (("k", ">i4"), ("ts", ">i8"), ("close", ">f8")))
    candles = candles[np.lexsort((candles["ts"], candles["k"]))]
    bounds = np.searchsorted(candles["k"], np.arange(1, len(symbols) + 2))
    last_closed = int(pg_microseconds([cutoff])[0])
    rows: dict[int, list[dict[str, np.ndarray]]] = {}
    for k, origin, last_close, target, p10, p90, p10_raw, p90_raw, governed in forecasts:
        n = int(np.searchsorted(target, last_closed, side="right"))  # steps whose candle closed by as_of
        if n:
            rows.setdefault(k, []).append({
                "origin": np.full(n, round(origin), dtype=np.int64), "step": np.arange(1, n + 1, dtype=np.int32),
                "target_ts": target[:n], "last_close": np.full(n, last_close), "served_lower": p10[:n],
                "served_upper": p90[:n], "raw_lower": (p10 if p10_raw is None else p10_raw)[:n],
                "raw_upper": (p90 if p90_raw is None else p90_raw)[:n],
                "governed": np.r_[governed, np.zeros(n, dtype=bool)][:n],
            })  # fmt: skip
    out: dict[str, CalibrationHistory] = {}
    for i, symbol in enumerate(symbols):
        bars = candles[bounds[i] : bounds[i + 1]]
        times, closes = bars["ts"].astype(np.int64), bars["close"].astype(np.float64)
        parts = rows.get(i + 1, [])
        column = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}
        target = column.get("target_ts", np.zeros(0, dtype=np.int64))
        at = np.searchsorted(times, target)
        stored = at < len(times)
        stored[stored] = times[at[stored]] == target[stored]  # a target candle that is not stored is left out
        empty = np.zeros(0)
        out[symbol] = CalibrationHistory(
            origin=column.get("origin", empty.astype(np.int64))[stored],
            step=column.get("step", empty.astype(np.int32))[stored],
            target_ts=target[stored],
            last_close=column.get("last_close", empty)[stored],
            realised=closes[at[stored]],
            raw_lower=column.get("raw_lower", empty)[stored],
            raw_upper=column.get("raw_upper", empty)[stored],
            served_lower=column.get("served_lower", empty)[stored],
            served_upper=column.get("served_upper", empty)[stored],
            governed=column.get("governed", empty.astype(bool))[stored],
            candle_ts=times,
            candle_close=closes,
        )
    return out


class _ArrayToNumpy(Loader):
    """Loads a one-dimensional ``double precision[]``, ``timestamptz[]`` (raw microseconds) or ``boolean[]`` in
    binary form straight into numpy (float64, int64, bool); a NULL element becomes NaN (float arrays only)."""

    format = Format.BINARY

    def load(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        buf = bytes(data)
        ndim, has_null, element_oid = struct.unpack_from(">iii", buf, 0)
        element, out = _ARRAY_DTYPES[element_oid]
        kind = np.dtype(element)
        if ndim == 0:
            return np.zeros(0, dtype=out)
        (count,) = struct.unpack_from(">i", buf, 12)
        start = 12 + 8 * ndim
        if has_null:  # decode element by element (NULL -> NaN)
            values, pos = [], start
            for _ in range(count):
                (size,) = struct.unpack_from(">i", buf, pos)
                pos += 4
                values.append(np.nan if size < 0 else np.frombuffer(buf, kind, 1, pos)[0])
                pos += max(size, 0)
            return np.asarray(values, dtype=out)
        pairs = np.frombuffer(buf, dtype=np.dtype([("n", ">i4"), ("v", kind)]), count=count, offset=start)
        return pairs["v"].astype(out)
