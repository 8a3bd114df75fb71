"""Market-data connectors for live use: ccxt (crypto klines) and yfinance (equities, FX, indices).

Both are optional extras (``pip install 'candlecast[connectors]'``). Each returns the canonical
candle frame (``ts`` UTC + open/high/low/close/volume/amount) holding only candles that had
closed by ``until``, ready for ``validate_candles`` and the store. Both libraries speak HTTP
through a ``requests.Session``; pass your own ``session`` to add proxies, or (in tests) a
session whose transport replays recorded responses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from candlecast.store.candles import timeframe_delta
from candlecast.store.schema import CANDLE_COLUMNS

if TYPE_CHECKING:
    import requests

__all__ = ["fetch_ccxt", "fetch_yfinance", "to_ccxt_symbol"]

_QUOTES = ("USDT", "USDC", "BUSD", "USD", "EUR", "BTC")


def to_ccxt_symbol(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` (ccxt's unified form); symbols with a slash pass through."""
    if "/" in symbol:
        return symbol
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return f"{symbol[: -len(quote)]}/{quote}"
    raise ValueError(f"cannot split {symbol!r} into base and quote; pass it as BASE/QUOTE")


def _closed(frame: pd.DataFrame, timeframe: str, until: datetime) -> pd.DataFrame:
    """Candles that had closed by ``until``, sorted, without repeats."""
    frame = frame[frame["ts"] + timeframe_delta(timeframe) <= until]
    return frame.drop_duplicates("ts", keep="last").sort_values("ts").reset_index(drop=True)


def fetch_ccxt(
    symbol: str,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    *,
    exchange: str = "binance",
    page_size: int = 1000,
    session: requests.Session | None = None,
    markets: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Klines of ``symbol`` from ``since`` to ``until`` (default now), paging through the exchange.

    ``markets`` (ccxt market dicts) skips ``load_markets`` when given. The unified OHLCV has no
    quote volume, so ``amount`` is missing (never made up).
    """
    import ccxt

    until = until or datetime.now(UTC)
    options: dict[str, Any] = {"enableRateLimit": session is None}
    if session is not None:
        options["session"] = session
    client = getattr(ccxt, exchange)(options)
    if markets is not None:
        client.set_markets(markets)
    else:
        client.load_markets()
    pair = to_ccxt_symbol(symbol)
    step_ms = int(timeframe_delta(timeframe).total_seconds() * 1000)
    cursor, end_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    rows: list[list[float]] = []
    while cursor < end_ms:
        page = client.fetch_ohlcv(pair, timeframe, since=cursor, limit=page_size)
        if not page:
            break
        rows.extend(page)
        next_cursor = int(page[-1][0]) + step_ms
        if next_cursor <= cursor:
            break
        cursor = next_cursor
    frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
    frame.insert(0, "ts", pd.to_datetime(frame.pop("ms"), unit="ms", utc=True))
    frame["amount"] = np.nan
    return _closed(frame[["ts", *CANDLE_COLUMNS]].astype(dict.fromkeys(CANDLE_COLUMNS, "float64")), timeframe, until)


def fetch_yfinance(
    ticker: str,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    *,
    session: requests.Session | None = None,
) -> pd.DataFrame:
    """Bars of ``ticker`` (Yahoo symbol, e.g. ``SPY``, ``EURUSD=X``, ``^VIX``) on our UTC grid.

    Daily bars are stamped with their session date at 00:00 UTC. Hourly candles are built from
    15-minute bars resampled to clock hours, because Yahoo's hourly equity bars start at :30 (so
    the 09:00 candle of a US stock holds only 09:30-10:00); Yahoo keeps 15-minute bars for about
    60 days. Prices are not adjusted for dividends or splits; volume is shares or contracts.
    """
    import yfinance as yf

    until = until or datetime.now(UTC)
    interval = "1d" if timeframe == "1d" else "15m"
    bars = yf.Ticker(ticker, session=session).history(
        start=since, end=until, interval=interval, auto_adjust=False, actions=False
    )
    if bars.empty:
        return _closed(pd.DataFrame(columns=["ts", *CANDLE_COLUMNS]).astype({"ts": "datetime64[ns, UTC]"}),
                       timeframe, until)  # fmt: skip
    bars = bars.rename(columns=str.lower)[["open", "high", "low", "close", "volume"]].astype("float64")
    index = pd.DatetimeIndex(bars.index)
    if timeframe == "1d":
        bars.index = pd.DatetimeIndex(index.tz_localize(None).normalize()).tz_localize("UTC")
    else:
        bars.index = index.tz_convert("UTC")
        bars = bars.resample("1h", label="left", closed="left").agg(
            {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
        )
        bars = bars.dropna(subset=["close"])
    frame = bars.rename_axis("ts").reset_index()
    frame["amount"] = np.nan
    return _closed(frame[["ts", *CANDLE_COLUMNS]], timeframe, until)
