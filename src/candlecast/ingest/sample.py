"""The shipped sample data: which candle files ``data/sample/`` holds, read from its ``manifest.json``.

``scripts/build_sample_data.py`` builds the folder from real market data inside PyPI packages and
writes the manifest; ``data/sample/SOURCES.md`` says where each file comes from. This module only
reads the manifest and checks it, so the CLI can load the files without knowing them by name, and labels the
instruments it loads (``label_sample_instruments``: each entry's ``name`` and ``quote_currency``, so that a
proxy such as SPY, which is the S&P 500 index level here, says so wherever it is shown).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.store.candles import get_instruments, upsert_instruments

__all__ = [
    "ASSET_CLASSES",
    "BAR_KINDS",
    "MANIFEST_NAME",
    "SampleFile",
    "label_sample_instruments",
    "load_sample_calendar",
    "load_sample_manifest",
]

MANIFEST_NAME = "manifest.json"
ASSET_CLASSES = frozenset({"crypto", "equity", "fx", "commodity", "index"})
BAR_KINDS = frozenset({"ohlc", "close"})
_TIMEFRAMES = frozenset({"1h", "1d"})


@dataclass(frozen=True)
class SampleFile:
    """One candle file of the sample: a (symbol, timeframe) series in the canonical Parquet schema."""

    symbol: str
    timeframe: str  # '1h' or '1d'
    path: Path  # absolute or relative to the working directory, as the sample_dir given
    asset_class: str
    source: str  # the package it came from, 'name==version'
    bar_kind: str  # 'ohlc', or 'close' where the source has only a close (open/high/low are null)
    licence: str = ""
    instrument: str = ""  # what the series really is, e.g. "S&P 500 index (^GSPC), proxy for SPY"
    rows: int = 0
    name: str | None = None  # the instrument's label wherever it is shown, e.g. "S&P 500 index level (^GSPC), ..."
    quote_currency: str | None = None  # what prices are in (None for index points)


def _read_manifest(sample_dir: Path) -> dict[str, Any]:
    path = Path(sample_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sample manifest; build it with scripts/build_sample_data.py")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    return manifest


def _field(entry: dict[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: field {name!r} is missing or not a non-empty string")
    return value


def _optional(entry: dict[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{where}: field {name!r} must be a non-empty string or null")
    return value


def load_sample_manifest(sample_dir: Path) -> list[SampleFile]:
    """The candle files listed in ``sample_dir/manifest.json``, in manifest order.

    Raises ``FileNotFoundError`` when the manifest or a listed file is absent, and ``ValueError``
    naming the entry and field when an entry is malformed.
    """
    sample_dir = Path(sample_dir)
    entries = _read_manifest(sample_dir).get("candles")
    if not isinstance(entries, list):
        raise ValueError(f"{sample_dir / MANIFEST_NAME}: field 'candles' must be a list")
    files: list[SampleFile] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        where = f"{sample_dir / MANIFEST_NAME}: candles[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        symbol, timeframe = _field(entry, "symbol", where), _field(entry, "timeframe", where)
        asset_class, bar_kind = _field(entry, "asset_class", where), _field(entry, "bar_kind", where)
        if timeframe not in _TIMEFRAMES:
            raise ValueError(f"{where}: field 'timeframe' must be one of {sorted(_TIMEFRAMES)}, found {timeframe!r}")
        if asset_class not in ASSET_CLASSES:
            raise ValueError(
                f"{where}: field 'asset_class' must be one of {sorted(ASSET_CLASSES)}, found {asset_class!r}"
            )
        if bar_kind not in BAR_KINDS:
            raise ValueError(f"{where}: field 'bar_kind' must be one of {sorted(BAR_KINDS)}, found {bar_kind!r}")
        if (symbol, timeframe) in seen:
            raise ValueError(f"{where}: {symbol} {timeframe} is listed twice")
        seen.add((symbol, timeframe))
        path = sample_dir / _field(entry, "file", where)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: file {path} does not exist")
        files.append(
            SampleFile(
                symbol=symbol,
                timeframe=timeframe,
                path=path,
                asset_class=asset_class,
                source=_field(entry, "source", where),
                bar_kind=bar_kind,
                licence=str(entry.get("licence", "")),
                instrument=str(entry.get("instrument", "")),
                rows=int(entry.get("rows", 0)),
                name=_optional(entry, "name", where),
                quote_currency=_optional(entry, "quote_currency", where),
            )
        )
    return files


def load_sample_calendar(sample_dir: Path) -> list[Path]:
    """The economic-calendar files listed in the manifest (CSV in the store's calendar columns)."""
    sample_dir = Path(sample_dir)
    entries = _read_manifest(sample_dir).get("calendar", [])
    if not isinstance(entries, list):
        raise ValueError(f"{sample_dir / MANIFEST_NAME}: field 'calendar' must be a list")
    paths: list[Path] = []
    for index, entry in enumerate(entries):
        where = f"{sample_dir / MANIFEST_NAME}: calendar[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        path = sample_dir / _field(entry, "file", where)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: file {path} does not exist")
        paths.append(path)
    return paths


def label_sample_instruments(engine: Engine, files: list[SampleFile]) -> int:
    """Write the manifest's ``name`` and ``quote_currency`` onto the stored instruments of ``files`` (after
    their candles are loaded); returns how many instruments were labelled. Other columns are kept as stored."""
    labels = {f.symbol: (f.name, f.quote_currency) for f in files if f.name or f.quote_currency}
    with engine.begin() as conn:
        stored = get_instruments(conn, sorted(labels))
        changed = [dataclasses.replace(i, name=labels[i.symbol][0], quote_currency=labels[i.symbol][1]) for i in stored]
        upsert_instruments(conn, changed)
    return len(changed)
