"""Request parameters, the one cache-key function shared by the showcase fast path and the reads, and how
errors become HTTP answers; without a server or a database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from candlecast.errors import AccessDenied, DatabaseUnavailable, InputError, NotFoundError, StoreError
from candlecast.gateway.cache import ResponseCache
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.middleware import ShowcaseFastPath
from candlecast.gateway.params import parse_forecast, parse_performance, parse_prediction
from candlecast.gateway.payloads.fields import data_status, price_decimals, prices, zulu
from candlecast.gateway.reads import SHOWCASE, cache_key
from candlecast.gateway.responses import error_payload, error_response


def test_parsing_normalises_what_means_the_same() -> None:
    # no timeframe: None, which the reader resolves to the newest timeframe with a forecast
    assert parse_forecast(" btcusdt ", None, None, "baseline") == ("BTCUSDT", "baseline", None)
    assert parse_forecast("BTCUSDT", "", "", "baseline") == ("BTCUSDT", "baseline", None)
    assert parse_forecast("BTCUSDT", None, "1d", "baseline") == ("BTCUSDT", "baseline", "1d")
    assert parse_performance(None, "", "", "") == (None, None, None, "all")
    assert parse_performance(" * ", None, None, None) == (None, None, None, "all")  # every symbol, said explicitly
    assert parse_performance("spy", "kronos-small", "1d", "trailing_30d") == (
        "SPY",
        "kronos-small",
        "1d",
        "trailing_30d",
    )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: parse_forecast("BTC$", None, None, "baseline"), "symbol"),
        (lambda: parse_forecast("BTC", "no spaces", None, "baseline"), "model_name"),
        (lambda: parse_forecast("BTC", None, "5m", "baseline"), "timeframe"),
        (lambda: parse_prediction("BTC", None, None, False, 11, "baseline", 10), "history"),
        (lambda: parse_performance(None, None, None, "forever"), "window"),
        (lambda: parse_performance("", None, None, None), "symbol"),  # a blank symbol is not "every symbol"
    ],
)
def test_malformed_values_raise_the_shared_input_error_naming_the_field(call: Any, field: str) -> None:
    with pytest.raises(InputError) as raised:
        call()
    assert raised.value.field == field and str(raised.value).startswith(field + ":")


class Recorder:
    """An ASGI app standing in for FastAPI behind the fast path: records whether a request reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1


def fast_path_get(path: str, query: bytes, cache: ResponseCache) -> tuple[Recorder, list[dict[str, Any]]]:
    inner = Recorder()
    fast = ShowcaseFastPath(inner, cache, GatewayMetrics(), default_model="baseline")
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": []}
    asyncio.run(fast(scope, None, send))
    return inner, sent


def test_the_fast_path_finds_the_entry_the_read_stored_for_any_spelling_of_the_request() -> None:
    cache = ResponseCache("public, max-age=5", "public, max-age=0")
    cache.listening = True
    key = cache_key(SHOWCASE, *parse_forecast("BTCUSDT", None, None, "baseline"))  # as GatewayData.showcase
    cache.put(key, 200, {"symbol": "BTCUSDT", "stale": False}, 60.0, "BTCUSDT", cache.token("BTCUSDT"))
    for path, query in [
        ("/showcase/ml-prediction/BTCUSDT", b""),
        ("/showcase/ml-prediction/btcusdt", b"model_name=&timeframe="),
        ("/showcase/ml-prediction/BTCUSDT", b"timeframe=5m&timeframe=&model_name=baseline"),  # the last one wins
    ]:
        inner, sent = fast_path_get(path, query, cache)
        assert inner.calls == 0, (path, query)
        assert sent[0]["status"] == 200 and json.loads(sent[1]["body"])["symbol"] == "BTCUSDT"
    for path, query in [
        ("/showcase/ml-prediction/BTCUSDT", b"model_name=kronos-small"),  # another entry: not cached
        ("/showcase/ml-prediction/BTCUSDT", b"timeframe=1h"),  # asked for explicitly: another entry too
        ("/showcase/ml-prediction/BTCUSDT", b"timeframe=5m"),  # malformed: the route answers 422
        ("/showcase/ml-prediction/BTC$", b""),
    ]:
        inner, sent = fast_path_get(path, query, cache)
        assert inner.calls == 1 and sent == [], (path, query)


def test_errors_answer_with_their_status_body_and_headers() -> None:
    def answer(exc: Any) -> tuple[int, dict[str, Any], Any]:
        response = error_response(exc)
        return response.status_code, json.loads(response.body), response.headers

    status, body, _ = answer(InputError("timeframe", "must be one of ['1h', '1d'], found '5m'"))
    assert (status, body) == (
        422,
        {"detail": "timeframe: must be one of ['1h', '1d'], found '5m'", "field": "timeframe"},
    )

    available = [{"model_name": "baseline", "timeframe": "1h"}]
    status, body, _ = answer(NotFoundError("model_name", "no 1h forecast of SPY by model 'x'", available))
    assert (status, body) == (404, {"detail": "no 1h forecast of SPY by model 'x'", "available": available})
    assert error_payload(NotFoundError("symbol", "unknown symbol 'NOPE'")) == {"detail": "unknown symbol 'NOPE'"}

    status, body, headers = answer(DatabaseUnavailable("database unreachable and nothing cached"))
    assert (status, body, headers["retry-after"]) == (503, {"detail": "database unreachable and nothing cached"}, "1")

    status, body, headers = answer(AccessDenied(429, "slow down", {"retry-after": "7"}))
    assert (status, body, headers["retry-after"]) == (429, {"detail": "slow down"}, "7")

    assert answer(StoreError("refused"))[:2] == (500, {"detail": "refused"})


@pytest.mark.parametrize(
    ("level", "decimals"),
    [(1.08123, 5), (0.9321, 6), (110.25, 3), (2485.74, 2), (40_000.0, 2), (15.2, 4), (0.0123, 7), (0.0, 6)],
)
def test_prices_keep_six_significant_digits_at_their_level_and_at_least_two_decimals(
    level: float, decimals: int
) -> None:
    assert price_decimals(level) == decimals
    assert prices([level * 1.000_001_234, None, float("nan")], decimals) == [round(level * 1.000_001_234, decimals)] + [
        None,
        None,
    ]


def test_stored_json_gets_z_timestamps_and_nothing_else_changes() -> None:
    stored = {"last_candle": "2024-02-15T00:00:00+00:00", "events": [{"at": "2024-02-15T13:30:00.5+00:00"}],
              "note": "+00:00 is not a timestamp", "other_zone": "2024-02-15T00:00:00+01:00", "n": 3}  # fmt: skip
    assert zulu(stored) == {
        **stored,
        "last_candle": "2024-02-15T00:00:00Z",
        "events": [{"at": "2024-02-15T13:30:00.5Z"}],
    }


def test_data_mode_is_replay_once_the_data_is_older_than_replay_after_h() -> None:
    now = datetime(2024, 3, 10, tzinfo=UTC)
    assert data_status(now - timedelta(hours=95), 96.0, now) == {
        "data_mode": "live",
        "data_as_of": "2024-03-06T01:00:00Z",
    }
    assert data_status(now - timedelta(hours=97), 96.0, now)["data_mode"] == "replay"
    assert data_status(None, 96.0, now) == {"data_mode": None, "data_as_of": None}
