"""Forecast rows (``ml_predictions``): one slot per (symbol, timeframe, model, as_of).

Writing a slot again replaces it (and drops the scores of the replaced forecast), so batch jobs
are idempotent. Every inserted or updated row fires ``NOTIFY ml_predictions`` (the row trigger of the
initial migration: ``{id, symbol, timeframe, model_name, as_of}``) for gateway caches, however it was
written.

``upsert_predictions`` writes many forecasts in one statement: the rows are streamed with binary COPY
(arrays encoded with numpy) into a temporary staging table, then moved with one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``. The whole list succeeds or fails together, in the
caller's transaction; a caller that must keep the good rows of a refused list writes them one by one.
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

from candlecast.store._copy import COPY_SIGNATURE, decode_binary_copy, pg_microseconds
from candlecast.store._sql import connection, cursor, read_rows
from candlecast.store.candles import closed_cutoff, timeframe_delta
from candlecast.store.partitions import ensure_partitions, month_of
from candlecast.store.schema import candle_table

__all__ = [
    "CalibrationHistory",
    "Prediction",
    "calibration_history",
    "to_prediction",
    "get_prediction",
    "latest_prediction",
    "latest_predictions",
    "previous_slots",
    "upsert_prediction",
    "upsert_predictions",
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
    provenance: dict[str, Any] | None = None  # model, checkpoint, code, configuration, data cutoffs, seed
    id: int | None = None
    generated_at: datetime | None = None
    samples_high: np.ndarray | None = None  # (sample_count, pred_len) sampled highs, models that give OHLC paths
    samples_low: np.ndarray | None = None  # (sample_count, pred_len) sampled lows, with samples_high
    # The model's own band when p10/p90 (and samples) hold a calibrated one; None: p10/p90 are the model's.
    p10_raw: np.ndarray | None = None
    p90_raw: np.ndarray | None = None
    calibration: dict[str, Any] | None = None  # how the served band was reached (jobs.calibrate)
    # When retention (store.keep_samples_days) dropped samples / samples_high / samples_low; None: not dropped.
    samples_dropped_at: datetime | None = None

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
        for name in ("samples_high", "samples_low"):
            extreme = getattr(self, name)
            if extreme is None:
                continue
            extreme = np.asarray(extreme, dtype=np.float32)
            setattr(self, name, extreme)
            if self.samples is None or extreme.shape != self.samples.shape:
                raise ValueError(f"{name} must have the shape of samples, found {extreme.shape}")


_COLUMNS = (
    "id, symbol, timeframe, model_name, model_version, generated_at, as_of, target_ts, "
    "p10, p50, p90, last_close, event_context, provenance, p10_raw, p90_raw, calibration, samples_dropped_at"
)


_SAMPLE_COLUMNS = ", samples, samples_high, samples_low"


def upsert_prediction(conn: Connection, p: Prediction) -> int:
    """Write the forecast of one slot, replacing a previous one; returns the row id.

    Runs in the caller's transaction. A replaced forecast's scores (and graded path questions) are deleted
    with it, because they scored numbers that no longer exist.
    """
    return upsert_predictions(conn, [p])[0]


# The columns a write sets, in the order of the staging table and of each binary COPY row.
_WRITE_COLUMNS = (
    "symbol", "timeframe", "model_name", "model_version", "as_of", "pred_len", "target_ts",
    "p10", "p50", "p90", "samples", "last_close", "event_context", "provenance", "samples_high", "samples_low",
    "p10_raw", "p90_raw", "calibration",
)  # fmt: skip
_STAGE = "_stage_ml_predictions"
# Element type OIDs of the array columns (binary array input checks them).
_OID_TIMESTAMPTZ, _OID_FLOAT8, _OID_FLOAT4 = 1184, 701, 700
_NULL = struct.pack(">i", -1)


def upsert_predictions(conn: Connection, predictions: Sequence[Prediction]) -> list[int]:
    """Write many forecasts at once, each replacing the previous forecast of its slot; returns their row
    ids in the order given.

    Runs in the caller's transaction and succeeds or fails as a whole (one statement). The scores of
    replaced forecasts are deleted. When one slot appears twice, the later forecast wins.
    """
    if not predictions:
        return []
    latest = {_slot_key(p): p for p in predictions}  # one row per slot: ON CONFLICT may touch a row once
    ensure_partitions(conn, "ml_predictions", {month_of(p.as_of) for p in latest.values()})
    names = ", ".join(_WRITE_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _WRITE_COLUMNS if c not in _SLOT_COLUMNS)
    with cursor(conn) as cur:
        # one round trip each: the staging table (created once per session, emptied), the rows, the move
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
            f"SELECT {names} FROM ml_predictions WITH NO DATA; TRUNCATE {_STAGE}"
        )
        with cur.copy(f"COPY {_STAGE} ({names}) FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(_copy_stream(list(latest.values())))
        # the scores of a replaced forecast go with it (they predate this statement, so its DELETE sees them)
        cur.execute(
            f"WITH written AS (INSERT INTO ml_predictions ({names}) SELECT {names} FROM {_STAGE} "
            "ON CONFLICT (symbol, timeframe, model_name, as_of) DO UPDATE SET "
            f"{updates}, generated_at = now(), samples_dropped_at = NULL "
            "RETURNING id, symbol, timeframe, model_name, as_of), "
            "dropped AS (DELETE FROM signal_evaluations e USING written w "
            "WHERE e.prediction_id = w.id AND e.as_of = w.as_of), "
            "dropped_paths AS (DELETE FROM path_evaluations WHERE prediction_id IN (SELECT id FROM written)) "
            "SELECT id, symbol, timeframe, model_name, as_of FROM written"
        )
        ids = {(row[1], row[2], row[3], row[4]): int(row[0]) for row in cur.fetchall()}
    return [ids[_slot_key(p)] for p in predictions]


_SLOT_COLUMNS = ("symbol", "timeframe", "model_name", "as_of")


def _slot_key(p: Prediction) -> tuple[str, str, str, datetime]:
    return p.symbol, p.timeframe, p.model_name, p.as_of


def _copy_stream(predictions: Sequence[Prediction]) -> bytes:
    """The binary COPY stream of the predictions, in the column order of ``_WRITE_COLUMNS``."""
    parts = [COPY_SIGNATURE, struct.pack(">ii", 0, 0)]
    count = struct.pack(">h", len(_WRITE_COLUMNS))
    for p in predictions:
        context = None if p.event_context is None else b"\x01" + json.dumps(p.event_context).encode()  # jsonb v1
        provenance = None if p.provenance is None else b"\x01" + json.dumps(p.provenance).encode()
        calibration = None if p.calibration is None else b"\x01" + json.dumps(p.calibration).encode()
        parts += [
            count,
            _value(p.symbol.encode()),
            _value(p.timeframe.encode()),
            _value(p.model_name.encode()),
            _value(p.model_version.encode()),
            _value(struct.pack(">q", int(pg_microseconds([p.as_of])[0]))),
            _value(struct.pack(">i", p.pred_len)),
            _value(_array(pg_microseconds(p.target_ts), _OID_TIMESTAMPTZ, ">i8")),
            _value(_array(p.p10, _OID_FLOAT8, ">f8")),
            _value(_array(p.p50, _OID_FLOAT8, ">f8")),
            _value(_array(p.p90, _OID_FLOAT8, ">f8")),
            _NULL if p.samples is None else _value(_array(p.samples, _OID_FLOAT4, ">f4")),
            _value(struct.pack(">d", float(p.last_close))),
            _NULL if context is None else _value(context),
            _NULL if provenance is None else _value(provenance),
            _NULL if p.samples_high is None else _value(_array(p.samples_high, _OID_FLOAT4, ">f4")),
            _NULL if p.samples_low is None else _value(_array(p.samples_low, _OID_FLOAT4, ">f4")),
            _NULL if p.p10_raw is None else _value(_array(p.p10_raw, _OID_FLOAT8, ">f8")),
            _NULL if p.p90_raw is None else _value(_array(p.p90_raw, _OID_FLOAT8, ">f8")),
            _NULL if calibration is None else _value(calibration),
        ]
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def _value(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _array(values: np.ndarray, element_oid: int, dtype: str) -> bytes:
    """A PostgreSQL binary array (any number of dimensions, no NULL elements) of fixed-width numbers."""
    values = np.asarray(values)
    dims = values.shape if values.size else ()
    header = struct.pack(f">iii{2 * len(dims)}i", len(dims), 0, element_oid, *[x for d in dims for x in (d, 1)])
    elements = np.empty(values.size, dtype=[("length", ">i4"), ("value", dtype)])
    elements["length"] = np.dtype(dtype).itemsize
    elements["value"] = values.ravel()
    return header + elements.tobytes()


def latest_prediction(
    bind: Engine | Connection,
    symbol: str,
    model_name: str,
    timeframe: str,
    with_samples: bool = False,
    as_of: datetime | None = None,
) -> Prediction | None:
    """The newest forecast of a (symbol, model, timeframe), optionally the newest made by ``as_of``.

    The newest one is found in ``forecast_heads`` (migration 0012), then read from its month's partition: two
    index probes however many months the history holds. By ``as_of``, the partitions up to it are searched."""
    columns = _COLUMNS + (_SAMPLE_COLUMNS if with_samples else "")
    params = {"symbol": symbol, "model": model_name, "timeframe": timeframe, "as_of": as_of}
    slot = "symbol = %(symbol)s AND model_name = %(model)s AND timeframe = %(timeframe)s"
    with connection(bind) as conn:
        if as_of is None:
            _, heads = read_rows(conn, f"SELECT as_of FROM forecast_heads WHERE {slot}", params)
            if not heads:
                return None
            sql = f"SELECT {columns} FROM ml_predictions WHERE {slot} AND as_of = %(head)s"
            names, rows = read_rows(conn, sql, {**params, "head": heads[0][0]})
        else:
            sql = (
                f"SELECT {columns} FROM ml_predictions WHERE {slot} AND as_of <= %(as_of)s ORDER BY as_of DESC LIMIT 1"
            )
            names, rows = read_rows(conn, sql, params)
    return to_prediction(dict(zip(names, rows[0], strict=True))) if rows else None


def get_prediction(bind: Engine | Connection, prediction_id: int, with_samples: bool = False) -> Prediction | None:
    """The forecast row ``prediction_id``, or None when there is none."""
    columns = _COLUMNS + (_SAMPLE_COLUMNS if with_samples else "")
    names, rows = read_rows(bind, f"SELECT {columns} FROM ml_predictions WHERE id = %(id)s", {"id": prediction_id})
    return to_prediction(dict(zip(names, rows[0], strict=True))) if rows else None


def latest_predictions(bind: Engine | Connection, timeframe: str | None = None) -> list[Prediction]:
    """The newest forecast of every (symbol, model, timeframe), without samples (through ``forecast_heads``)."""
    columns = ", ".join(f"p.{c.strip()}" for c in _COLUMNS.split(","))
    sql = (
        f"SELECT {columns} FROM forecast_heads h JOIN ml_predictions p ON p.symbol = h.symbol "
        "AND p.model_name = h.model_name AND p.timeframe = h.timeframe AND p.as_of = h.as_of "
        "WHERE (%(timeframe)s::text IS NULL OR h.timeframe = %(timeframe)s) "
        "ORDER BY p.symbol, p.model_name, p.timeframe"
    )
    names, rows = read_rows(bind, sql, {"timeframe": timeframe})
    return [to_prediction(dict(zip(names, row, strict=True))) for row in rows]


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


def _float32(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)


def to_prediction(row: dict[str, Any]) -> Prediction:
    """A Prediction from a row of ml_predictions (optional columns may be absent)."""
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
        provenance=row.get("provenance"),
        samples=_float32(row.get("samples")),
        samples_high=_float32(row.get("samples_high")),
        samples_low=_float32(row.get("samples_low")),
        p10_raw=row.get("p10_raw"),
        p90_raw=row.get("p90_raw"),
        calibration=row.get("calibration"),
        samples_dropped_at=row.get("samples_dropped_at"),
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
    governed: np.ndarray  # bool: the forecast's calibration set the served band of this step
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
