"""The keyed /api/v1 routes: API keys, rate limits, and that each answer holds what the store holds."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support

from candlecast.config import Settings
from candlecast.gateway.schemas import ErrorBody, Forecast, Health, Instruments, Jobs, Performance, PredictionDetail
from candlecast.store.candles import latest_candles
from candlecast.store.performance import calibration, performance
from candlecast.store.predictions import latest_prediction

KEY = {"X-API-Key": "test-key-1"}
API_PATHS = ["/api/v1/instruments", "/api/v1/predictions/BTCUSDT", "/api/v1/performance", "/api/v1/jobs"]


@pytest.mark.parametrize("path", API_PATHS)
def test_api_routes_refuse_a_missing_key_401_and_a_wrong_key_403(gateway: Any, path: str) -> None:
    missing = gateway.get(path)
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    assert gateway.get(path, headers={"X-API-Key": "test-key-1x"}).status_code == 403
    assert gateway.get(path, headers={"X-API-Key": ""}).status_code == 401
    assert gateway.get(path, headers={"X-API-Key": "test-key-2"}).status_code == 200


def test_prediction_detail_carries_samples_and_the_candles_known_at_as_of(gateway: Any, store: Engine) -> None:
    response = gateway.get("/api/v1/predictions/EURUSD", params={"samples": "true", "history": 10}, headers=KEY)
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("private")
    body = response.json()
    stored = latest_prediction(store, "EURUSD", "baseline", "1h", with_samples=True)
    assert stored is not None and stored.samples is not None
    assert body["model_version"] == "test-1" and body["pred_len"] == 24
    level = stored.last_close  # EURUSD near 1: prices with 5 decimals at 1.xx, 6 at 0.9x
    assert body["samples"] == [support.rounded(path, level) for path in stored.samples]
    np.testing.assert_allclose(np.asarray(body["samples"], dtype=np.float32), stored.samples, rtol=1e-5)
    assert body["p90"] == support.rounded(stored.p90, level)
    decimals = 5 if level >= 1 else 6
    assert all(round(v, decimals) == v for v in body["p90"]) and any(round(v, decimals - 1) != v for v in body["p90"])
    candles = latest_candles(store, "EURUSD", "1h", 10, stored.as_of)
    assert [datetime.fromisoformat(t) for t in body["history"]["ts"]] == list(candles["ts"])
    assert body["history"]["close"] == support.rounded(candles["close"], level)
    assert body["history"]["volume"] == list(candles["volume"])

    plain = gateway.get("/api/v1/predictions/EURUSD", headers=KEY).json()
    assert "samples" not in plain and "history" not in plain
    too_long = gateway.get("/api/v1/predictions/EURUSD", params={"history": 10**6}, headers=KEY)
    assert too_long.status_code == 422 and too_long.json()["field"] == "history"


def test_instruments_list_symbols_candle_ranges_and_available_forecasts(gateway: Any) -> None:
    body = gateway.get("/api/v1/instruments", headers=KEY).json()
    by_symbol = {row["symbol"]: row for row in body["instruments"]}
    assert set(by_symbol) == set(support.SYMBOLS)
    spy = by_symbol["SPY"]
    assert spy["asset_class"] == "equity"
    assert spy["candles"]["1h"]["rows"] == 200 and spy["candles"]["1d"]["rows"] == 60
    slots = {(f["model_name"], f["timeframe"]) for f in spy["forecasts"]}
    assert slots == {("baseline", "1h"), ("kronos-small", "1h"), ("baseline", "1d")}


def test_performance_is_the_signal_performance_view_plus_calibration(gateway: Any, store: Engine) -> None:
    body = gateway.get("/api/v1/performance", params={"model_name": "kronos-small"}, headers=KEY).json()
    expected = performance(store, model_name="kronos-small")
    assert len(body["rows"]) == len(expected) == 3
    for got, row in zip(body["rows"], expected, strict=True):
        assert (got["symbol"], got["n_steps"]) == (row.symbol, row.n_steps)
        assert got["coverage"] == row.coverage and got["hit_rate"] == row.hit_rate
        assert got["mean_crps"] == row.mean_crps and got["sharpe"] == row.sharpe
    [calib] = calibration(store, model_name="kronos-small")
    assert body["calibration"][0]["observed"] == [calib.below_p10, calib.below_p50, calib.below_p90]
    assert body["nominal_coverage"] == 0.8
    bad = gateway.get("/api/v1/performance", params={"window": "forever"}, headers=KEY)
    assert bad.status_code == 422 and bad.json()["field"] == "window"


def test_jobs_show_recent_runs_and_data_freshness(gateway: Any) -> None:
    body = gateway.get("/api/v1/jobs", headers=KEY).json()
    assert [run["job_name"] for run in body["runs"]] == ["score-signals-1h"]
    assert body["last_runs"]["score-signals-1h"]["status"] == "ok"
    assert body["last_runs"]["score-signals-1h"]["counts"]["predictions_scored"] == 18
    assert body["freshness"]["1h"]["newest_candle_ts"] == "2024-03-01T11:00:00Z"
    assert body["freshness"]["1h"]["newest_forecast_as_of"] == "2024-03-01T12:00:00Z"
    assert body["freshness"]["1h"]["forecast_slots"] == 6


def client_from(gw: Any, address: str) -> httpx.Client:
    """A client whose requests come from another loopback address (Linux routes all of 127/8 to lo)."""
    return httpx.Client(base_url=gw.url, transport=httpx.HTTPTransport(local_address=address))


def test_rate_limits_apply_per_client_address_and_per_key(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, rate_limit_per_minute=3)
    with support.GatewayServer(settings) as gw:
        for _ in range(3):
            assert gw.get("/api/v1/jobs", headers=KEY).status_code == 200
        limited = gw.get("/api/v1/jobs", headers=KEY)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert gw.get("/showcase/ml-prediction/BTCUSDT").status_code == 200  # public routes: separate limit
        with client_from(gw, "127.0.0.2") as other_address:  # fresh address, same (spent) key
            assert other_address.get("/api/v1/jobs", headers=KEY).status_code == 429
        with client_from(gw, "127.0.0.3") as third:  # fresh address, fresh key
            assert third.get("/api/v1/jobs", headers={"X-API-Key": "test-key-2"}).status_code == 200


def test_public_routes_have_their_own_per_address_limit_when_configured(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, public_rate_limit_per_minute=2)
    with support.GatewayServer(settings) as gw:
        answers = [gw.get("/showcase/ml-prediction/BTCUSDT") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert "rate limit of 2 requests per minute" in answers[2].json()["detail"]
        assert int(answers[2].headers["retry-after"]) >= 1
        assert gw.get("/symbol/BTCUSDT").status_code == 429  # pages share the per-address limit
        assert gw.get("/api/v1/jobs", headers=KEY).status_code == 200


def test_mcp_can_be_made_to_require_the_api_key(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, mcp_requires_key=True)
    list_tools = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with support.GatewayServer(settings) as gw:
        missing = gw.client.post("/mcp", json=list_tools, headers=headers)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'  # as on /api/v1
        wrong = gw.client.post("/mcp", json=list_tools, headers={**headers, "X-API-Key": "nope"})
        assert wrong.status_code == 403
        right = gw.client.post("/mcp", json=list_tools, headers={**headers, "X-API-Key": "test-key-1"})
        assert right.status_code == 200
        assert "get_forecast" in {tool["name"] for tool in right.json()["result"]["tools"]}


def test_with_no_key_configured_keyed_routes_say_so_and_how_to_set_one(seeded_url: str) -> None:
    with support.GatewayServer(Settings(database_url=seeded_url)) as gw:  # the demo's default: no keys
        for headers in ({}, {"X-API-Key": "a-guess"}):
            refused = gw.get("/api/v1/instruments", headers=headers)
            assert refused.status_code == 403
            detail = refused.json()["detail"]
            assert detail.startswith("no API key is configured on this gateway")
            assert "CANDLECAST_GATEWAY__API_KEYS" in detail and "invalid" not in detail
        assert gw.get("/showcase/ml-prediction/SPY").status_code == 200


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/predictions/BTCUSDT?history=abc", "history"),
        ("/api/v1/predictions/BTCUSDT?samples=maybe", "samples"),
        ("/api/v1/jobs?limit=ten", "limit"),
        ("/api/v1/jobs?limit=0", "limit"),  # ours: out of range
        ("/api/v1/performance?symbol=", "symbol"),  # blank is not "every symbol"
    ],
)
def test_every_422_has_the_one_detail_and_field_shape(gateway: Any, path: str, field: str) -> None:
    response = gateway.get(path, headers=KEY)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "field"} and body["field"] == field
    assert body["detail"].startswith(field + ": ") and "\n" not in body["detail"]
    assert "pydantic" not in body["detail"] and "http" not in body["detail"]
    ErrorBody.model_validate(body)


def test_performance_refuses_unknown_symbols_and_models_listing_the_available_ones(gateway: Any) -> None:
    unknown = gateway.get("/api/v1/performance", params={"symbol": "NOPE"}, headers=KEY)
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "unknown symbol 'NOPE'", "available": sorted(support.SYMBOLS)}
    model = gateway.get("/api/v1/performance", params={"model_name": "kronos-mega"}, headers=KEY)
    assert model.status_code == 404 and model.json()["available"] == ["baseline", "kronos-small"]
    every = gateway.get("/api/v1/performance", params={"symbol": "*"}, headers=KEY).json()
    assert every["rows"] == gateway.get("/api/v1/performance", headers=KEY).json()["rows"]
    assert len(every["rows"]) == 6 and every["symbol"] is None


def test_answers_say_replay_or_live_use_z_timestamps_and_match_their_declared_schemas(
    extended_gateway: Any,
) -> None:
    gw = extended_gateway
    showcase = gw.get("/showcase/ml-prediction/QQQ").json()  # no timeframe: QQQ has only a daily forecast
    assert (showcase["timeframe"], showcase["data_mode"], showcase["data_as_of"]) == (
        "1d",
        "replay",
        "2024-02-16T00:00:00Z",
    )
    Forecast.model_validate(showcase)
    detail = gw.get("/api/v1/predictions/QQQ", params={"history": 5, "samples": "true"}, headers=KEY).json()
    PredictionDetail.model_validate(detail)
    assert detail["event_context"]["last_candle"] == "2024-02-15T00:00:00Z"  # stored as +00:00
    assert detail["history"]["ts"][-1] == "2024-02-15T00:00:00Z"  # open time of the last candle closed by as_of
    instruments = gw.get("/api/v1/instruments", headers=KEY).json()
    Instruments.model_validate(instruments)
    spy = next(row for row in instruments["instruments"] if row["symbol"] == "SPY")
    assert (spy["name"], spy["quote_currency"]) == support.LABELS["SPY"]
    assert instruments["data_mode"] == "replay" and instruments["data_as_of"] == "2024-03-01T12:00:00Z"
    perf = gw.get("/api/v1/performance", params={"symbol": "SPY"}, headers=KEY).json()
    Performance.model_validate(perf)
    assert perf["data_mode"] == "replay" and all(r["name"] == support.LABELS["SPY"][0] for r in perf["rows"])
    jobs = gw.get("/api/v1/jobs", headers=KEY).json()
    Jobs.model_validate(jobs)
    assert jobs["data_as_of"] == "2024-03-01T12:00:00Z"
    Health.model_validate(gw.get("/health").json())
    for body in (gw.get("/showcase/ml-prediction/NOPE").json(), gw.get("/api/v1/jobs").json()):
        ErrorBody.model_validate(body)
    for text in (json.dumps(showcase), json.dumps(detail), json.dumps(instruments), json.dumps(jobs)):
        assert "+00:00" not in text
