"""Conversions to JSON-ready values shared by the payload builders.

- Timestamps are ISO 8601 in UTC with a ``Z`` suffix, everywhere (``iso``; ``zulu`` rewrites the ``+00:00`` form
  inside stored JSON such as ``event_context``). A candle's timestamp is its *open* time.
- Prices are rounded to the instrument's precision, derived from its price level (``price_decimals``): six
  significant digits at the level of the last close, and never fewer than two decimals. EURUSD at 1.08 gets 5
  decimals, USDJPY at 110 gets 3, the S&P 500 at 2485 gets 2, BTC at 40000 gets 2.
- Every answer says whether its data is live or a historical replay (``data_status``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from candlecast.store.candles import Instrument
from candlecast.store.predictions import Prediction

__all__ = [
    "PRICE_SIGNIFICANT_DIGITS",
    "candles_payload",
    "data_status",
    "floats",
    "instrument_label",
    "iso",
    "iso_from_epoch",
    "parse_iso",
    "price_decimals",
    "prices",
    "showcase_fields",
    "zulu",
]

PRICE_SIGNIFICANT_DIGITS = 6
_MIN_DECIMALS, _MAX_DECIMALS = 2, 10
_UTC_OFFSET = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\+00:00$")


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


def zulu(value: Any) -> Any:
    """``value`` (stored JSON) with every UTC timestamp string written with ``Z`` instead of ``+00:00``."""
    if isinstance(value, str):
        match = _UTC_OFFSET.match(value)
        return match.group(1) + "Z" if match else value
    if isinstance(value, dict):
        return {k: zulu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [zulu(v) for v in value]
    return value


def floats(values: Iterable[Any]) -> list[float | None]:
    """Plain floats for JSON; NaN and infinities become null."""
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(f if f is not None and math.isfinite(f) else None)
    return out


def price_decimals(level: float | None) -> int:
    """Decimals to show prices at ``level`` with: ``PRICE_SIGNIFICANT_DIGITS`` significant digits, at least 2
    (and at most 10). An unknown or zero level gets 6."""
    if level is None or not math.isfinite(level) or level == 0:
        return 6
    digits = PRICE_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(level)))
    return min(_MAX_DECIMALS, max(_MIN_DECIMALS, digits))


def prices(values: Iterable[Any], decimals: int) -> list[float | None]:
    """``floats`` rounded to ``decimals``."""
    return [None if v is None else round(v, decimals) for v in floats(values)]


def data_status(as_of: datetime | None, replay_after_h: float, now: datetime | None = None) -> dict[str, Any]:
    """``data_mode`` and ``data_as_of`` of an answer whose data reflects the market as of ``as_of``.

    ``data_mode`` is ``"replay"`` when ``as_of`` is more than ``replay_after_h`` hours before the moment the answer
    is read from the store (a historical replay, e.g. the shipped sample data), ``"live"`` otherwise, and null
    when the answer holds no data. The data's age is ``now - data_as_of``: the MCP tools send it as
    ``data_age_s``; HTTP answers leave it out so that their body (and ETag) stays the same on every replica.
    """
    if as_of is None:
        return {"data_mode": None, "data_as_of": None}
    now = now or datetime.now(UTC)
    mode = "replay" if now - as_of > timedelta(hours=replay_after_h) else "live"
    return {"data_mode": mode, "data_as_of": iso(as_of)}


def instrument_label(i: Instrument | None) -> dict[str, Any]:
    """``name`` (what the series really is, e.g. "S&P 500 index level (^GSPC), proxy for SPY") and
    ``quote_currency`` (null for index points)."""
    return {"name": i.name if i else None, "quote_currency": i.quote_currency if i else None}


def showcase_fields(p: Prediction, decimals: int | None = None) -> dict[str, Any]:
    """The forecast fields of the public showcase answer (without the label, data status and ``stale``), shared
    by every forecast payload; prices rounded to ``decimals`` (default: from the last close)."""
    if decimals is None:
        decimals = price_decimals(p.last_close)
    return {
        "symbol": p.symbol,
        "model_name": p.model_name,
        "timeframe": p.timeframe,
        "generated_at": iso(p.generated_at),
        "as_of": iso(p.as_of),
        "target_timestamps": [iso(ts) for ts in p.target_ts],
        "p10": prices(p.p10, decimals),
        "p50": prices(p.p50, decimals),
        "p90": prices(p.p90, decimals),
        "last_close": prices([p.last_close], decimals)[0],
    }


def candles_payload(
    frame: pd.DataFrame | None, columns: Sequence[str], decimals: int, volume: bool = False
) -> dict[str, list[Any]]:
    """Candles column by column: ``ts`` (open times) and the named price ``columns`` rounded to ``decimals``;
    ``volume`` adds the volume column (null where unknown)."""
    names = [*columns, "volume"] if volume else list(columns)
    if frame is None or not len(frame):
        return {"ts": [], **{name: [] for name in names}}
    out: dict[str, list[Any]] = {"ts": [iso(ts) for ts in frame["ts"]]}
    for column in columns:
        out[column] = prices(frame[column], decimals)
    if volume:
        out["volume"] = floats(frame["volume"])
    return out
