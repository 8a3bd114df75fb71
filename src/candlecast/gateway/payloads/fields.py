"""Conversions to JSON-ready values shared by the payload builders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from candlecast.store.predictions import Prediction

__all__ = ["candles_payload", "floats", "iso", "iso_from_epoch", "parse_iso", "showcase_fields"]


def iso(ts: datetime | pd.Timestamp | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix; None (and NaT) stay None."""
    if ts is None or ts is pd.NaT:
        return None
    if isinstance(ts, pd.Timestamp):
        ts = ts.to_pydatetime()
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_from_epoch(seconds: float | None) -> str | None:
    return None if seconds is None else iso(datetime.fromtimestamp(seconds, UTC))


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def floats(values: Iterable[Any]) -> list[float | None]:
    """Plain floats for JSON; NaN and infinities become null."""
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(f if f is not None and math.isfinite(f) else None)
    return out


def showcase_fields(p: Prediction) -> dict[str, Any]:
    """The fields of the public showcase answer (without ``stale``), shared by every forecast payload."""
    return {
        "symbol": p.symbol,
        "model_name": p.model_name,
        "timeframe": p.timeframe,
        "generated_at": iso(p.generated_at),
        "as_of": iso(p.as_of),
        "target_timestamps": [iso(ts) for ts in p.target_ts],
        "p10": floats(p.p10),
        "p50": floats(p.p50),
        "p90": floats(p.p90),
        "last_close": floats([p.last_close])[0],
    }


def candles_payload(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, list[Any]]:
    """Candles column by column: ``ts`` and the named ``columns``."""
    out: dict[str, list[Any]] = {"ts": [iso(ts) for ts in frame["ts"]] if len(frame) else []}
    for column in columns:
        out[column] = floats(frame[column]) if len(frame) else []
    return out
