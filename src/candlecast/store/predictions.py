"""Forecast rows (``ml_predictions``): one slot per (symbol, timeframe, model, as_of).

Writing a slot again replaces it (and drops the scores of the replaced forecast), so batch jobs
are idempotent. Every insert or update fires ``NOTIFY ml_predictions`` for gateway caches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import cursor, read_rows

__all__ = ["Prediction", "latest_prediction", "latest_predictions", "previous_slots", "upsert_prediction"]


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

    @property
    def pred_len(self) -> int:
        return len(self.target_ts)

    def __post_init__(self) -> None:
        for name in ("p10", "p50", "p90"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.samples is not None:
            self.samples = np.asarray(self.samples, dtype=np.float32)
        n = len(self.target_ts)
        shapes = {name: getattr(self, name).shape for name in ("p10", "p50", "p90")}
        if any(shape != (n,) for shape in shapes.values()):
            raise ValueError(f"p10/p50/p90 must each have {n} values (one per target), found {shapes}")
        if self.samples is not None and (self.samples.ndim != 2 or self.samples.shape[1] != n):
            raise ValueError(f"samples must have shape (sample_count, {n}), found {self.samples.shape}")


_COLUMNS = (
    "id, symbol, timeframe, model_name, model_version, generated_at, as_of, target_ts, "
    "p10, p50, p90, last_close, event_context"
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
    }
    sql = """
        INSERT INTO ml_predictions (symbol, timeframe, model_name, model_version, as_of, pred_len,
            target_ts, p10, p50, p90, samples, last_close, event_context)
        VALUES (%(symbol)s, %(timeframe)s, %(model_name)s, %(model_version)s, %(as_of)s, %(pred_len)s,
            %(target_ts)s, %(p10)s, %(p50)s, %(p90)s, %(samples)s, %(last_close)s, %(event_context)s::jsonb)
        ON CONFLICT (symbol, timeframe, model_name, as_of) DO UPDATE SET
            model_version = EXCLUDED.model_version, generated_at = now(), pred_len = EXCLUDED.pred_len,
            target_ts = EXCLUDED.target_ts, p10 = EXCLUDED.p10, p50 = EXCLUDED.p50, p90 = EXCLUDED.p90,
            samples = EXCLUDED.samples, last_close = EXCLUDED.last_close,
            event_context = EXCLUDED.event_context
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
    )
