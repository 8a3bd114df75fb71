"""The inputs check: a forecast whose input candles were rewritten after it was made is flagged.

Every forecast the batch job writes records, in its provenance, the number of candles it read, the first and
the last (its cutoff) and the sha256 of their times and values (``models.provenance.candles_sha256``). The
check reads the same window again (the last ``candles`` candles closed by the forecast's slot) and compares:
a rewritten value, or a candle added or removed inside the window, changes the hash, and the row's provenance
gets ``inputs_changed: true`` with when and what was found (``inputs_changed_detail``). The scoring job runs
it on the forecasts it looks at, so a forecast is checked until it is scored; ``check_inputs`` runs it on any
rows. Flagging updates the row, so the gateway's caches hear of it (the ``ml_predictions`` NOTIFY).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.errors import InputError
from candlecast.models.base import OHLCV_COLUMNS, SeriesInput
from candlecast.models.provenance import candles_sha256
from candlecast.store._sql import cursor, read_rows
from candlecast.store.candles import candles_covering, window_before

__all__ = ["check_inputs"]


def _sha256(stamps: pd.DatetimeIndex, ohlcv: np.ndarray, symbol: str, timeframe: str) -> str | None:
    """The inputs hash of a candle window as the batch job computes it (None when it is no longer usable)."""
    if not len(stamps):
        return None
    try:
        series = SeriesInput(timestamps=stamps, ohlcv=ohlcv, symbol=symbol, timeframe=timeframe)
    except InputError:
        return None
    return candles_sha256(series.timestamps.asi8, series.ohlcv)  # type: ignore[attr-defined]


def check_inputs(engine: Engine, prediction_ids: Iterable[int], checked_at: datetime | None = None) -> list[int]:
    """Compare the inputs of the given forecasts with the candles stored now; flag and return those changed.

    Rows without an inputs hash (written before provenance, or by jobs that read no candles, like the
    ensemble) and rows already flagged are left alone.
    """
    ids = [int(i) for i in prediction_ids]
    if not ids:
        return []
    _, rows = read_rows(
        engine,
        "SELECT id, symbol, timeframe, as_of, (provenance->'inputs'->>'candles')::int, "
        "provenance->'inputs'->>'sha256' FROM ml_predictions WHERE id = ANY(%(ids)s) "
        "AND provenance->'inputs'->>'sha256' IS NOT NULL "
        "AND coalesce((provenance->>'inputs_changed')::boolean, false) = false",
        {"ids": ids},
    )
    by_series: dict[tuple[str, str], list[tuple[int, datetime, int, str]]] = {}
    for pid, symbol, timeframe, as_of, n, digest in rows:
        by_series.setdefault((symbol, timeframe), []).append((int(pid), as_of, int(n), digest))
    changed: dict[int, dict[str, Any]] = {}
    for (symbol, timeframe), members in by_series.items():
        # one read per series covers every member's window (a scoring run checks ~h forecasts per series)
        candles = candles_covering(
            engine,
            symbol,
            timeframe,
            max(m[2] for m in members),
            min(m[1] for m in members),
            max(m[1] for m in members),
        )
        stamps = pd.DatetimeIndex(candles["ts"])
        values = candles[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
        for pid, as_of, n, digest in members:
            window = window_before(stamps, timeframe, n, as_of)
            now = _sha256(stamps[window], values[window], symbol, timeframe)
            if now != digest:
                changed[pid] = {
                    "found_at": (checked_at or datetime.now().astimezone()).isoformat(),
                    "inputs_sha256_now": now,
                    "candles_now": window.stop - window.start,
                }
    if changed:
        with engine.begin() as conn, cursor(conn) as cur:
            cur.executemany(
                "UPDATE ml_predictions SET provenance = provenance || jsonb_build_object("
                "'inputs_changed', true, 'inputs_changed_detail', %(detail)s::jsonb) WHERE id = %(id)s",
                [{"id": pid, "detail": json.dumps(detail)} for pid, detail in changed.items()],
            )
    return sorted(changed)
