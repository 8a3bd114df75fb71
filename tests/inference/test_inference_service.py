"""The inference service over real HTTP: routes, bad input, auth, batching, unavailable models."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from candlecast.inference.app import create_app

TOKEN = "test-token-123"
Payload = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def url(serve_app: Callable[..., Any], settings_for: Callable[..., Any]) -> Iterator[str]:
    settings = settings_for(
        "baseline,kronos-tiny,kronos-broken,no-such-model",
        token=TOKEN,
        batch_window_ms=30.0,
        max_body_bytes=200_000,
        max_context_candles=300,
        max_pred_len=64,
        default_sample_count=8,
    )
    with serve_app(create_app(settings)) as base:
        yield base


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield client


def predict_body(make_payload: Payload, n: int = 48, **extra: Any) -> dict[str, Any]:
    return {**make_payload(n), "pred_len": 5, "sample_count": 4, "seed": 7, **extra}


def test_predict_round_trips_the_original_shape(http: httpx.Client, make_payload: Payload) -> None:
    body = predict_body(make_payload, events=np.zeros((48, 20)).tolist())
    response = http.post("/predict", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    expected = {"p10", "p50", "p90", "samples", "target_timestamps", "model_name", "model_version", "last_close"}
    assert set(out) == expected
    assert out["model_name"] == "baseline"  # the first configured model that loaded
    assert len(out["p10"]) == len(out["p50"]) == len(out["p90"]) == 5
    assert np.array(out["samples"]).shape == (4, 5)
    assert (np.array(out["p10"]) <= np.array(out["p90"])).all()
    last = pd.Timestamp(body["timestamps"][-1])
    assert pd.DatetimeIndex(out["target_timestamps"]).equals(pd.date_range(last, periods=6, freq="h")[1:])
    assert out["last_close"] == body["ohlcv"][-1][3]
    again = http.post("/predict", json=body).json()
    assert again == out  # same seed, same answer


def test_predict_with_kronos_samples_its_paths(http: httpx.Client, make_payload: Payload) -> None:
    response = http.post("/predict", json=predict_body(make_payload, model="kronos-tiny"))
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_name"] == "kronos-tiny" and out["model_version"].startswith("sha256:")
    assert np.isfinite(np.array(out["samples"])).all() and np.array(out["samples"]).shape == (4, 5)


def test_forecast_takes_many_series_with_levels_and_ohlc(http: httpx.Client, make_payload: Payload) -> None:
    spy = {**make_payload(30, seed=1, start="2024-06-24", freq="B"), "symbol": "SPY", "timeframe": "1d"}
    btc = {**make_payload(40, seed=2), "symbol": "BTCUSDT"}
    body = {"model": "kronos-tiny", "series": [spy, btc], "pred_len": 3, "sample_count": 2, "seed": 1,
            "quantile_levels": [0.05, 0.5, 0.95], "include_ohlc": True}  # fmt: skip
    response = http.post("/v1/forecast", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert [f["symbol"] for f in out["forecasts"]] == ["SPY", "BTCUSDT"]
    first = out["forecasts"][0]
    assert first["quantile_levels"] == [0.05, 0.5, 0.95]
    assert np.array(first["quantiles"]).shape == (3, 3)
    assert np.array(first["ohlc_samples"]).shape == (2, 3, 4)
    # SPY is an equity: its daily targets are NYSE sessions, so Friday 2024-08-02 is followed by Monday.
    assert spy["timestamps"][-1].startswith("2024-08-02")
    assert first["target_timestamps"] == ["2024-08-05T00:00:00Z", "2024-08-06T00:00:00Z", "2024-08-07T00:00:00Z"]
    # BTCUSDT is crypto: hourly targets run straight on.
    assert out["forecasts"][1]["target_timestamps"][0] == (
        pd.Timestamp(btc["timestamps"][-1]) + pd.Timedelta("1h")
    ).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_health_reports_unloadable_models_with_their_reason_while_others_serve(url: str) -> None:
    response = httpx.get(f"{url}/health")  # open without a token
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "degraded"
    models = health["models"]
    assert models["baseline"]["status"] == "loaded" and models["kronos-tiny"]["status"] == "loaded"
    assert models["kronos-broken"]["status"] == "unavailable"
    assert "/nonexistent/kronos-tokenizer" in models["kronos-broken"]["reason"]
    assert "unknown model 'no-such-model'" in models["no-such-model"]["reason"]


def test_requests_for_an_unavailable_model_get_503_with_the_reason(http: httpx.Client, make_payload: Payload) -> None:
    response = http.post("/predict", json=predict_body(make_payload, model="kronos-broken"))
    assert response.status_code == 503
    assert response.json()["error"] == "model_unavailable"
    assert "/nonexistent/kronos-tokenizer" in response.json()["detail"]


def test_models_lists_version_context_and_parameters(http: httpx.Client) -> None:
    out = http.get("/models").json()
    assert out["default"] == "baseline"
    by_name = {m["name"]: m for m in out["models"]}
    assert by_name["kronos-tiny"]["available"] and by_name["kronos-tiny"]["context_length"] == 64
    assert by_name["kronos-tiny"]["parameters"] > 0
    assert by_name["baseline"]["version"].startswith("bootstrap")
    assert not by_name["no-such-model"]["available"]


def with_row(payload: dict[str, Any], row: int, values: list[Any]) -> dict[str, Any]:
    ohlcv = [list(r) for r in payload["ohlcv"]]
    ohlcv[row] = values
    return {**payload, "ohlcv": ohlcv}


def swapped_timestamps(payload: dict[str, Any]) -> dict[str, Any]:
    ts = list(payload["timestamps"])
    ts[3], ts[4] = ts[4], ts[3]
    return {**payload, "timestamps": ts}


BAD_PREDICT: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str, str]] = [
    ("empty context", lambda b: {**b, "ohlcv": [], "timestamps": []}, "timestamps", "empty context"),
    ("context too long", lambda b: {**b, **_long(301)}, "ohlcv", "too long"),
    ("pred_len zero", lambda b: {**b, "pred_len": 0}, "pred_len", "between 1 and 64"),
    ("pred_len too large", lambda b: {**b, "pred_len": 65}, "pred_len", "between 1 and 64"),
    ("OHLC inconsistent", lambda b: with_row(b, 2, [100, 90, 95, 100, 1, 1]), "ohlcv", "OHLC inconsistent at row 2"),
    ("close missing", lambda b: with_row(b, 2, [None] * 6), "ohlcv", "close is missing"),
    ("row of 3 values", lambda b: with_row(b, 2, [1, 2, 3]), "ohlcv[2]", "4 to 6 values"),
    ("timestamps not increasing", swapped_timestamps, "timestamps", "strictly increasing"),
    ("timestamps without zone", lambda b: {**b, "timestamps": [t[:19] for t in b["timestamps"]]}, "timestamps[0]",
     "timezone"),
    ("lengths differ", lambda b: {**b, "timestamps": b["timestamps"][:-1]}, "ohlcv", "timestamps has 47"),
    ("events not (T, 20)", lambda b: {**b, "events": [[0.0] * 19] * 48}, "events", "(48, 20)"),
    ("events ragged", lambda b: {**b, "events": [[0.0] * 20] * 47 + [[0.0]]}, "events", "different lengths"),
    ("unknown model", lambda b: {**b, "model": "gpt-9"}, "model", "unknown model 'gpt-9'"),
    ("sample_count zero", lambda b: {**b, "sample_count": 0}, "sample_count", "between 1 and"),
    ("negative seed", lambda b: {**b, "seed": -1}, "seed", "between 0 and"),
    ("unknown field", lambda b: {**b, "horizon": 5}, "horizon", "Extra inputs"),
    ("unknown timeframe", lambda b: {**b, "timeframe": "7m"}, "timeframe", "expected one of"),
    ("string price", lambda b: with_row(b, 1, ["a", 1, 1, 1]), "ohlcv[1][0]", "number"),
]  # fmt: skip


def _long(n: int) -> dict[str, Any]:
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return {"timestamps": [t.isoformat() for t in ts], "ohlcv": [[1.0, 1.0, 1.0, 1.0]] * n}


@pytest.mark.parametrize(("case", "mutate", "field", "message"), BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_bad_predict_input_gets_422_naming_the_field(
    http: httpx.Client, make_payload: Payload, case: str, mutate: Callable[..., Any], field: str, message: str
) -> None:
    response = http.post("/predict", json=mutate(predict_body(make_payload)))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_get_422_naming_the_value(http: httpx.Client, make_payload: Payload, literal: str) -> None:
    text = json.dumps(predict_body(make_payload)).replace('"ohlcv": [[', f'"ohlcv": [[{literal}, ', 1)
    text = re.sub(r'"ohlcv": \[\[([^,]+), [^,]+,', r'"ohlcv": [[\1,', text, count=1)  # keep 6 values
    response = http.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "ohlcv[0][0]"
    assert "finite" in response.json()["errors"][0]["message"]


def test_bad_series_in_a_batch_are_named_by_index(http: httpx.Client, make_payload: Payload) -> None:
    good, bad = make_payload(20, seed=1), swapped_timestamps(make_payload(20, seed=2))
    body = {"series": [good, bad], "pred_len": 3, "quantile_levels": [0.1, 1.5]}
    response = http.post("/v1/forecast", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"series[1].timestamps", "quantile_levels"}


def test_per_series_seeds_make_a_series_independent_of_its_neighbours(
    http: httpx.Client, make_payload: Payload
) -> None:
    a, b = make_payload(30, seed=1), make_payload(30, seed=2)
    pair = http.post("/v1/forecast", json={"series": [a, b], "pred_len": 3, "sample_count": 4, "seed": [11, 22]})
    alone = http.post("/v1/forecast", json={"series": [b], "pred_len": 3, "sample_count": 4, "seed": [22]})
    assert pair.status_code == alone.status_code == 200, pair.text
    assert pair.json()["forecasts"][1]["samples"] == alone.json()["forecasts"][0]["samples"]
    wrong = http.post("/v1/forecast", json={"series": [a, b], "pred_len": 3, "seed": [11]})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "seed"


def test_malformed_json_gets_422(http: httpx.Client) -> None:
    response = http.post("/v1/forecast", content=b'{"series": [', headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"


def test_a_body_over_the_limit_gets_413(http: httpx.Client) -> None:
    response = http.post("/v1/forecast", content=b"[" + b"1," * 150_000 + b"1]",
                         headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413


def test_a_token_is_required_and_compared(url: str, make_payload: Payload) -> None:
    body = predict_body(make_payload)
    missing = httpx.post(f"{url}/predict", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{url}/predict", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    # The token is checked before the body is read: garbage without a token is a 401, not a 422.
    assert httpx.post(f"{url}/v1/forecast", content=b"{{{").status_code == 401
    assert httpx.get(f"{url}/models").status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200


def merged_batches(http: httpx.Client, model: str, metric: Callable[..., float]) -> float:
    text = http.get("/metrics").text
    total = metric(text, "candlecast_inference_batch_requests_count", model=model)
    single = metric(text, "candlecast_inference_batch_requests_bucket", model=model, le="1.0")
    return total - single


def test_concurrent_requests_equal_the_same_requests_one_by_one(
    http: httpx.Client, make_payload: Payload, metric: Callable[..., float]
) -> None:
    bodies = []
    for i in range(20):
        model = "kronos-tiny" if i % 2 else "baseline"
        series = [{**make_payload(20 + 3 * i, seed=i), "symbol": f"S{i}"}]
        if i % 3 == 0:
            series.append({**make_payload(30, seed=100 + i), "symbol": f"T{i}"})
        bodies.append({"model": model, "series": series, "pred_len": 3, "sample_count": 4, "seed": 1000 + i})
    sequential = [http.post("/v1/forecast", json=b).json() for b in bodies]
    merged_before = merged_batches(http, "kronos-tiny", metric) + merged_batches(http, "baseline", metric)
    start = threading.Barrier(20)

    def send(body: dict[str, Any]) -> dict[str, Any]:
        start.wait()
        return http.post("/v1/forecast", json=body).json()

    with ThreadPoolExecutor(20) as pool:
        concurrent = list(pool.map(send, bodies))
    for one, many in zip(sequential, concurrent, strict=True):
        for a, b in zip(one["forecasts"], many["forecasts"], strict=True):
            np.testing.assert_allclose(a["samples"], b["samples"], rtol=1e-5)
            np.testing.assert_allclose(a["quantiles"], b["quantiles"], rtol=1e-5)
    # The concurrent requests really were merged into shared model calls.
    assert merged_batches(http, "kronos-tiny", metric) + merged_batches(http, "baseline", metric) > merged_before


def test_metrics_count_requests_latency_and_queue_depth(
    http: httpx.Client, make_payload: Payload, metric: Callable[..., float]
) -> None:
    http.post("/predict", json=predict_body(make_payload))
    text = http.get("/metrics").text
    assert metric(text, "candlecast_inference_requests_total", route="/predict", status="200") >= 1
    assert metric(text, "candlecast_inference_request_seconds_count", route="/predict") >= 1
    assert metric(text, "candlecast_inference_batch_series_count", model="baseline") >= 1
    assert "candlecast_inference_queue_depth" in text


def test_each_request_is_logged_as_one_json_line(
    http: httpx.Client, make_payload: Payload, caplog: pytest.LogCaptureFixture
) -> None:
    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "candlecast.inference"]
        return [line for line in lines if line["path"] == "/predict"]

    with caplog.at_level("INFO", logger="candlecast.inference"):
        http.post("/predict", json=predict_body(make_payload, n=30, pred_len=4))
        http.post("/predict", json=predict_body(make_payload, pred_len=0))
        deadline = time.monotonic() + 10  # the line is written once the response has gone out
        while len(logged()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    ok, bad = logged()[-2:]
    assert ok["status"] == 200 and ok["model"] == "baseline" and ok["series"] == 1 and ok["pred_len"] == 4
    assert ok["ms"] > 0
    assert bad["status"] == 422
