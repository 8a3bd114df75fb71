"""The ccxt and yfinance connectors, over a requests transport that replays recorded responses.

The real libraries run end to end (URL building, paging, parsing); only the network is replaced.
See tests/fixtures/connectors/build.py for how the responses were made.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.models import PreparedRequest, Response

from candlecast.ingest.candles import validate_candles
from candlecast.ingest.connectors import fetch_ccxt, fetch_yfinance, to_ccxt_symbol

RECORDED = Path(__file__).parents[1] / "fixtures" / "connectors"
BTC_MARKET = [
    {"id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "baseId": "BTC", "quoteId": "USDT",
     "type": "spot", "spot": True, "active": True, "precision": {}, "limits": {}}
]  # fmt: skip


class Replay(BaseAdapter):
    """Answers each request from recorded bodies keyed by path + sorted query (only keys in ``match``)."""

    def __init__(self, recorded: dict[str, object], match: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.recorded, self.match, self.urls = recorded, match, []

    def send(self, request: PreparedRequest, **kwargs: object) -> Response:
        self.urls.append(request.url)
        parts = urlsplit(request.url or "")
        query = sorted((k, v) for k, v in parse_qsl(parts.query) if self.match is None or k in self.match)
        key = parts.path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
        response = Response()
        response.url, response.request = request.url, request
        if key in self.recorded:
            response.status_code, response._content = 200, json.dumps(self.recorded[key]).encode()
            response.headers["Content-Type"] = "application/json"
        elif parts.path.endswith("getcrumb"):
            response.status_code, response._content = 200, b"recorded-crumb"
        elif parts.netloc == "fc.yahoo.com":
            response.status_code, response._content = 200, b""
        else:
            response.status_code, response._content = 404, f"nothing recorded for {key}".encode()
        return response

    def close(self) -> None:
        pass


def session_for(adapter: Replay) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    return session


def test_ccxt_pages_through_klines_and_keeps_only_closed_candles() -> None:
    adapter = Replay(json.loads((RECORDED / "binance_klines.json").read_text()))
    until = datetime(2019, 10, 3, 2, 30, tzinfo=UTC)
    frame = fetch_ccxt("BTCUSDT", "1h", datetime(2019, 10, 1, tzinfo=UTC), until, page_size=24,
                       session=session_for(adapter), markets=BTC_MARKET)  # fmt: skip
    assert len(adapter.urls) == 3  # three pages; the cursor then passes `until`
    assert len(frame) == 50  # 48 hours + 00:00 and 01:00 of Oct 3; the 02:00 candle was still open
    assert frame["ts"].iloc[-1] == pd.Timestamp("2019-10-03 01:00", tz="UTC")
    assert frame["amount"].isna().all()
    sample = pd.read_parquet(Path("data/sample/candles/BTCUSDT_1h.parquet")).set_index("ts")
    np.testing.assert_allclose(frame["close"], sample.loc[frame["ts"], "close"].round(2), rtol=0, atol=1e-9)
    valid, errors = validate_candles(frame, "1h")
    assert errors == [] and len(valid) == 50


def test_yfinance_daily_bars_are_stamped_at_utc_midnight() -> None:
    adapter = Replay(json.loads((RECORDED / "yahoo_chart.json").read_text()), match=("interval",))
    frame = fetch_yfinance("SPY", "1d", datetime(2018, 10, 1, tzinfo=UTC), datetime(2018, 10, 6, tzinfo=UTC),
                           session=session_for(adapter))  # fmt: skip
    assert list(frame["ts"].dt.strftime("%Y-%m-%d %H:%M")) == [
        "2018-10-01 00:00", "2018-10-02 00:00", "2018-10-03 00:00", "2018-10-04 00:00", "2018-10-05 00:00"]  # fmt: skip
    assert validate_candles(frame, "1d")[1] == []


def test_yfinance_hourly_candles_are_clock_hours_built_from_quarter_hour_bars() -> None:
    adapter = Replay(json.loads((RECORDED / "yahoo_chart.json").read_text()), match=("interval",))
    frame = fetch_yfinance("SPY", "1h", datetime(2018, 10, 1, tzinfo=UTC), datetime(2018, 10, 1, 16, tzinfo=UTC),
                           session=session_for(adapter))  # fmt: skip
    hours = frame.set_index(frame["ts"].dt.hour)
    assert list(hours.index) == [13, 14, 15]
    # 13:00 holds only 13:30-14:00 (the session opens at 09:30 New York time)
    assert (hours.loc[13, "open"], hours.loc[13, "close"], hours.loc[13, "volume"]) == (291.0, 291.5, 1.2e6)
    assert (hours.loc[14, "high"], hours.loc[14, "low"], hours.loc[14, "close"]) == (291.8, 290.6, 290.8)
    assert (hours.loc[15, "open"], hours.loc[15, "close"], hours.loc[15, "volume"]) == (290.8, 290.9, 0.9e6)


@pytest.mark.parametrize(("symbol", "pair"), [("BTCUSDT", "BTC/USDT"), ("ETHBTC", "ETH/BTC"), ("SOL/USDC", "SOL/USDC")])
def test_symbols_map_to_ccxt_pairs(symbol: str, pair: str) -> None:
    assert to_ccxt_symbol(symbol) == pair


def test_unsplittable_symbol_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        to_ccxt_symbol("SPY")
