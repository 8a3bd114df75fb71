"""``GET /api/v1/probability``: path questions answered from the cached sample paths of a stored forecast, each
equal to ``candlecast.paths`` on the stored paths, with the horizon given as steps or a time, refusals (422) when
too few paths for the asked precision, and highs/lows used where the forecast stored them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support

from candlecast import paths
from candlecast.gateway.schemas import ErrorBody, PathAnswer
from candlecast.store import create_engine_for
from candlecast.store.predictions import Prediction, latest_prediction

KEY = {"X-API-Key": "test-key-1"}
URL = "/api/v1/probability"


def ask(gateway: Any, **params: Any) -> Any:
    return gateway.get(URL, params=params, headers=KEY)


def stored(store: Engine, symbol: str = "BTCUSDT", model: str = "baseline", timeframe: str = "1h") -> Prediction:
    p = latest_prediction(store, symbol, model, timeframe, with_samples=True)
    assert p is not None and p.samples is not None
    return p


def test_touch_and_close_equal_the_path_maths_on_the_stored_paths(gateway: Any, store: Engine) -> None:
    p = stored(store)
    closes = p.samples.astype(np.float64)
    level = float(np.quantile(closes.max(axis=1), 0.4))  # touched by about 60% of the paths
    body = ask(gateway, symbol="btcusdt", question="touch", level=level, timeframe="1h").json()
    PathAnswer.model_validate(body)
    expected = paths.touch(closes, level, p.pred_len, above=True)
    assert (body["probability"], body["standard_error"], body["paths"]) == (
        expected.probability, expected.standard_error, 32,
    )  # fmt: skip
    assert body["side"] == "above" and body["basis"] == "close" and 0.3 < body["probability"] < 0.9
    assert (body["forecast_id"], body["steps"], body["horizon_steps"]) == (p.id, 24, 24)
    assert body["by"] == (p.target_ts[-1] + timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    below = ask(gateway, symbol="BTCUSDT", question="close", level=p.last_close * 0.995, steps=5).json()
    expected = paths.close_beyond(closes, p.last_close * 0.995, 5, above=False)
    assert below["side"] == "below" and below["probability"] == expected.probability and below["steps"] == 5


def test_by_a_time_counts_the_candles_that_close_by_then(gateway: Any, store: Engine) -> None:
    p = stored(store)
    third_close = p.target_ts[2] + timedelta(hours=1)
    level = p.last_close * 1.002
    for by in (third_close, third_close + timedelta(minutes=59)):
        body = ask(gateway, symbol="BTCUSDT", question="touch", level=level, by=by.isoformat()).json()
        assert body["steps"] == 3, by
        assert body["probability"] == paths.touch(p.samples, level, 3, above=True).probability
    early = ask(gateway, symbol="BTCUSDT", question="touch", level=level, by=p.as_of.isoformat())
    late = ask(gateway, symbol="BTCUSDT", question="touch", level=level, by="2030-01-01T00:00:00Z")
    both = ask(gateway, symbol="BTCUSDT", question="touch", level=level, by="2030-01-01", steps=3)
    for response in (early, late, both):
        assert response.status_code == 422 and response.json()["field"] == "by", response.text
    assert "closes at" in early.json()["detail"] and "after the horizon" in late.json()["detail"]


def test_stop_before_target_and_drawdown_quantiles(gateway: Any, store: Engine) -> None:
    p = stored(store)
    stop, target = p.last_close * 0.99, p.last_close * 1.01
    body = ask(gateway, symbol="BTCUSDT", question="first", level=stop, level_b=target).json()
    PathAnswer.model_validate(body)
    expected = paths.first_touch(p.samples, stop, target, p.pred_len, p.last_close)
    assert {k: v["probability"] for k, v in body["outcomes"].items()} == {k: a.probability for k, a in expected.items()}
    assert body["probability"] == expected["a_first"].probability
    assert sum(v["probability"] for v in body["outcomes"].values()) == pytest.approx(1.0)

    drawdown = ask(gateway, symbol="BTCUSDT", question="drawdown", steps=12).json()
    PathAnswer.model_validate(drawdown)
    expected_q = paths.max_drawdown(p.samples, 12, (0.1, 0.5, 0.9), start=p.last_close)
    assert [q["value"] for q in drawdown["quantiles"]] == list(expected_q.values)
    assert drawdown["probability"] is None and drawdown["mean"] == expected_q.mean
    runup = ask(gateway, symbol="BTCUSDT", question="runup").json()
    assert [q["quantile"] for q in runup["quantiles"]] == [0.1, 0.5, 0.9]
    assert all(q["lower"] <= q["value"] <= q["upper"] for q in runup["quantiles"])


def test_too_few_paths_for_the_asked_precision_is_a_422_saying_how_many_are_needed(gateway: Any) -> None:
    answer = ask(gateway, symbol="SPY", question="touch", level=1.0, side="above", max_standard_error=0.05)
    assert answer.status_code == 200  # nothing touches: a small (shrunk) standard error is within 0.05
    refused = ask(gateway, symbol="SPY", question="close", level=500.0, steps=24, max_standard_error=0.01)
    assert refused.status_code == 422
    body = refused.json()
    ErrorBody.model_validate(body)
    assert body["field"] == "max_standard_error"
    assert "32 paths give a standard error" in body["detail"] and "paths would be needed" in body["detail"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"symbol": "BTCUSDT", "question": "maybe"}, "question"),
        ({"symbol": "BTCUSDT", "question": "touch"}, "level"),
        ({"symbol": "BTCUSDT", "question": "first", "level": 1.0}, "level_b"),
        ({"symbol": "BTCUSDT", "question": "touch", "level": -3}, "level"),
        ({"symbol": "BTCUSDT", "question": "touch", "level": 1, "side": "up"}, "side"),
        ({"symbol": "BTCUSDT", "question": "touch", "level": 1, "steps": 25}, "steps"),
        ({"symbol": "BTCUSDT", "question": "touch", "level": 1, "by": "friday"}, "by"),
    ],
)
def test_malformed_questions_are_a_422_naming_the_field(gateway: Any, params: dict[str, Any], field: str) -> None:
    response = ask(gateway, **params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_unknown_symbols_and_forecast_ids_are_404_and_a_given_forecast_is_answered(gateway: Any, store: Engine) -> None:
    unknown = ask(gateway, symbol="NOPE", question="drawdown")
    assert unknown.status_code == 404 and "BTCUSDT" in unknown.json()["available"]
    older = latest_prediction(
        store, "BTCUSDT", "baseline", "1h", with_samples=True, as_of=support.AS_OF - timedelta(hours=1)
    )
    assert older is not None and older.samples is not None
    body = ask(gateway, symbol="BTCUSDT", question="touch", level=older.last_close * 1.003, forecast_id=older.id).json()
    assert body["forecast_id"] == older.id and body["as_of"].startswith("2024-02-29T12")
    expected = paths.touch(older.samples, older.last_close * 1.003, older.pred_len, above=True)
    assert body["probability"] == expected.probability
    other = ask(gateway, symbol="SPY", question="drawdown", forecast_id=older.id)
    assert other.status_code == 404 and "it is a forecast of BTCUSDT" in other.json()["detail"]
    missing = ask(gateway, symbol="BTCUSDT", question="drawdown", forecast_id=10**9)
    assert missing.status_code == 404


def test_questions_are_answered_from_one_cached_paths_entry(gateway: Any) -> None:
    for level in (40_000, 40_500, 41_000, 39_000):
        assert ask(gateway, symbol="BTCUSDT", question="touch", level=level).status_code == 200
    metrics = gateway.get("/metrics").text
    counts = {
        line.split("{")[1].split("}")[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("candlecast_gateway_cache_total{")
    }
    assert counts['result="miss"'] == 1 and counts['result="hit"'] == 3


@pytest.fixture
def ohlc_gateway(own_seeded_url: str) -> Iterator[tuple[support.GatewayServer, Prediction]]:
    """A kronos-style forecast of EURUSD whose highs sit 1% above and lows 1% below its closes."""
    engine = create_engine_for(own_seeded_url)
    p = support.forecast("EURUSD", "kronos-small", "1h", support.AS_OF + timedelta(hours=1), 1.08, seed=5)
    assert p.samples is not None
    p.samples_high, p.samples_low = p.samples * 1.01, p.samples * 0.99
    support.insert(engine, p)
    engine.dispose()
    with support.GatewayServer(support.settings_for(own_seeded_url)) as server:
        yield server, p


def test_highs_and_lows_are_the_basis_where_the_forecast_stored_them(
    ohlc_gateway: tuple[support.GatewayServer, Prediction],
) -> None:
    gateway, p = ohlc_gateway
    assert p.samples is not None and p.samples_high is not None and p.samples_low is not None
    level = float(np.quantile(p.samples.max(axis=1), 0.9))
    body = ask(gateway, symbol="EURUSD", model_name="kronos-small", question="touch", level=level).json()
    expected = paths.touch(p.samples, level, p.pred_len, above=True, highs=p.samples_high, lows=p.samples_low)
    on_closes = paths.touch(p.samples, level, p.pred_len, above=True)
    assert body["basis"] == "high/low" and body["probability"] == expected.probability
    assert body["probability"] > on_closes.probability
    close = ask(gateway, symbol="EURUSD", model_name="kronos-small", question="close", level=level).json()
    assert close["basis"] == "close"
    drawdown = ask(gateway, symbol="EURUSD", model_name="kronos-small", question="drawdown").json()
    assert drawdown["basis"] == "high/low"
