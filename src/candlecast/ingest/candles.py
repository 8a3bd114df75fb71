"""Reading and validating candle files (CSV or Parquet) before they reach the store.

A file is read into the canonical frame (``ts`` tz-aware UTC + open/high/low/close/volume/amount),
every row is checked, and either all rows are written in one transaction or none are (unless the
caller asks to skip the invalid ones). Errors name the file, the row numbers and the reason.
Row numbers are 1-based data rows, so row 1 is the first line after a CSV header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.errors import InputError
from candlecast.store.candles import Instrument, get_instruments, timeframe_delta, upsert_candles, upsert_instruments
from candlecast.store.schema import CANDLE_COLUMNS

__all__ = [
    "IngestError",
    "IngestResult",
    "RowError",
    "ingest_candles",
    "read_candle_file",
    "resample_daily",
    "parse_timestamps",
    "validate_candles",
]

# Column names seen in the wild -> our names (compared case-insensitively).
_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "timestamps", "time", "date", "datetime", "open_time", "opentime", "dt"),
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price", "price", "last"),
    "volume": ("volume", "vol", "v", "base_volume"),
    "amount": ("amount", "quote_volume", "turnover", "value", "quote_asset_volume"),
}


class IngestError(InputError):
    """A file was refused; nothing was written. The message names the file and every bad row."""

    def __init__(self, message: str) -> None:
        super().__init__("", message)


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row of the file
    reason: str


@dataclass
class IngestResult:
    path: Path
    symbol: str
    timeframe: str
    written: int
    skipped: list[RowError] = field(default_factory=list)


def read_candle_file(path: Path, timezone: str = "UTC") -> pd.DataFrame:
    """Read a CSV or Parquet file into the canonical columns, keeping file order.

    Naive timestamps are taken to be in ``timezone`` (UTC unless told); numbers that look like
    epoch seconds or milliseconds are accepted. Unparseable timestamps become NaT and are
    reported by ``validate_candles``.
    """
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
        if "ts" not in {str(c).lower() for c in raw.columns} and isinstance(raw.index, pd.DatetimeIndex):
            raw = raw.rename_axis("ts").reset_index()
    elif suffix in (".csv", ".txt") or path.name.endswith(".csv.gz"):
        raw = pd.read_csv(path)
    else:
        raise IngestError(f"{path}: unsupported file type {suffix!r}; expected .csv or .parquet")

    lower = {str(c).strip().lower(): c for c in raw.columns}
    frame = pd.DataFrame(index=raw.index)
    for name, aliases in _ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is not None:
            frame[name] = raw[found]
    missing = [c for c in ("ts", "close") if c not in frame]
    if missing:
        raise IngestError(f"{path}: no column for {missing}; found columns {list(raw.columns)}")
    frame["ts"] = parse_timestamps(frame["ts"], timezone)
    for column in CANDLE_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    return frame[["ts", *CANDLE_COLUMNS]].reset_index(drop=True)


def parse_timestamps(values: pd.Series, timezone: str = "UTC") -> pd.Series:
    """Parse timestamps to UTC. Values with an offset keep it; naive ones are read in ``timezone``.

    Numbers are epoch seconds, or milliseconds when large. Unparseable values become NaT.
    """
    if pd.api.types.is_numeric_dtype(values):
        unit: Literal["ms", "s"] = "ms" if values.abs().max() > 1e11 else "s"
        return pd.to_datetime(values, unit=unit, utc=True, errors="coerce")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    text = values.astype("string").str.strip()
    has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(text[has_offset], utc=True, errors="coerce", format="mixed")
    if (~has_offset).any():
        naive = pd.to_datetime(text[~has_offset], errors="coerce", format="mixed")
        local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        out[~has_offset] = local.dt.tz_convert("UTC")
    return out


def validate_candles(frame: pd.DataFrame, timeframe: str) -> tuple[pd.DataFrame, list[RowError]]:
    """Split a canonical frame into valid rows (sorted by ts) and row errors.

    Checks: parseable timestamp on the timeframe's grid; finite numbers; open/high/low all present or
    all absent (close-only bars); high >= low; open and close within [low, high]; volume and amount
    not negative; no timestamp twice with different values (exact repeats are collapsed).
    """
    step_ns = timeframe_delta(timeframe) // pd.Timedelta(1, "ns")
    checks: dict[str, np.ndarray] = {}  # reason -> boolean mask over rows

    ts = frame["ts"]
    checks["unparseable timestamp"] = ts.isna().to_numpy()
    ns = ts.to_numpy(dtype="datetime64[ns]").astype("int64")
    checks[f"timestamp not on the {timeframe} grid"] = ts.notna().to_numpy() & (ns % step_ns != 0)
    values = frame[list(CANDLE_COLUMNS)].to_numpy(dtype="float64")
    o, h, low, c, volume, amount = values.T
    checks["infinite value"] = np.isinf(values).any(axis=1)
    checks["close missing or not a number"] = np.isnan(c)
    present = ~np.isnan(values[:, :3])
    checks["open/high/low must all be present or all absent"] = present.any(axis=1) & ~present.all(axis=1)
    with np.errstate(invalid="ignore"):  # comparisons with NaN are False, as wanted
        checks["high below low"] = h < low
        checks["open outside [low, high]"] = (o < low) | (o > h)
        checks["close outside [low, high]"] = (c < low) | (c > h)
        checks["negative volume"] = volume < 0
        checks["negative amount"] = amount < 0

    # The same timestamp twice with different values is an error on every such row.
    repeated = frame[ts.duplicated(keep=False) & ts.notna()]
    conflict = np.zeros(len(frame), dtype=bool)
    if not repeated.empty:
        distinct = repeated.groupby("ts")[list(CANDLE_COLUMNS)].nunique(dropna=False)
        conflict = ts.isin(distinct.index[(distinct > 1).any(axis=1)]).to_numpy()
    checks["duplicate timestamp with different values"] = conflict

    masks = np.column_stack(list(checks.values()))
    bad = np.asarray(masks.any(axis=1), dtype=bool)
    names = list(checks)
    errors = [RowError(int(i) + 1, "; ".join(names[j] for j in np.flatnonzero(masks[i]))) for i in np.flatnonzero(bad)]
    valid = frame.loc[~bad].drop_duplicates(subset=["ts"]).sort_values("ts", kind="stable").reset_index(drop=True)
    return valid, errors


def resample_daily(hourly: pd.DataFrame) -> pd.DataFrame:
    """Daily candles (UTC days) from hourly ones: first open, max high, min low, last close, summed volume."""
    frame = hourly.set_index("ts").sort_index()
    daily = frame.resample("1D").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "amount": "sum"}
    )
    # sums of all-missing groups are 0 in pandas; keep them missing
    counts = frame[["volume", "amount"]].resample("1D").count()
    daily[["volume", "amount"]] = daily[["volume", "amount"]].where(counts > 0)
    return daily.dropna(subset=["close"]).rename_axis("ts").reset_index()


def format_errors(path: Path, errors: list[RowError], limit: int = 50) -> str:
    lines = [f"{path}: {len(errors)} invalid row(s):"]
    lines += [f"  row {e.row}: {e.reason}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return "\n".join(lines)


def ingest_candles(
    engine: Engine,
    path: Path,
    symbol: str,
    timeframe: str,
    asset_class: str,
    *,
    skip_invalid: bool = False,
    timezone: str = "UTC",
    source: str | None = None,
    frame: pd.DataFrame | None = None,
    update_asset_class: bool = False,
) -> IngestResult:
    """Validate and load one candle file for ``symbol`` in one transaction.

    With invalid rows and ``skip_invalid`` false nothing is written and ``IngestError`` lists every
    bad row; with ``skip_invalid`` the valid rows are written and the rest reported in the result.
    ``frame`` may be given instead of reading ``path`` (already canonical).

    A symbol already stored with another asset class is refused (the class sets its trading calendar, so a
    silent mismatch would misplace its forecasts) unless ``update_asset_class``, which changes it.
    """
    canonical = read_candle_file(path, timezone) if frame is None else frame
    valid, errors = validate_candles(canonical, timeframe)
    if errors and not skip_invalid:
        raise IngestError(format_errors(path, errors))
    bar_kind = "close" if valid["open"].isna().all() and len(valid) else "ohlc"
    with engine.begin() as conn:
        stored = get_instruments(conn, [symbol])
        if stored and stored[0].asset_class != asset_class:
            if not update_asset_class:
                raise IngestError(
                    f"{symbol} is stored with asset class {stored[0].asset_class!r}, not {asset_class!r}; "
                    "pass --update-asset-class to change it (it decides the trading calendar of its forecasts)"
                )
            conn.execute(
                sa.text("UPDATE instruments SET asset_class = :c WHERE symbol = :s"), {"c": asset_class, "s": symbol}
            )
        instrument = Instrument(symbol, asset_class, source=source or path.name, bar_kind=bar_kind)
        upsert_instruments(conn, [instrument], update=False)
        written = upsert_candles(conn, symbol, timeframe, valid)
    return IngestResult(path, symbol, timeframe, written, errors)
