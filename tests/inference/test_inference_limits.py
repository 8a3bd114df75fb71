"""Bounded work per request, strict JSON types, JSON 413s, an OpenAPI schema that matches the answers, and the
refusal to serve open on a public address (issue 14: amplification, job records, security pass)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from candlecast.config import InferenceSettings, Settings, is_loopback
from candlecast.errors import InputError
from candlecast.inference.app import check_exposure, create_app, serve
from candlecast.inference.schemas import RequestInvalid, check_request

TOKEN = "limits-token"
Payload = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def url(serve_app: Callable[..., Any]) -> Iterator[str]:
    """The baseline with the default limits, except a small body limit."""
    settings = Settings(models="baseline", inference=InferenceSettings(token=TOKEN, max_body_bytes=300_000))
    with serve_app(create_app(settings)) as base:
        yield base


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield client


def short_series(make_payload: Payload, n: int) -> list[dict[str, Any]]:
    return [{**make_payload(3, seed=i), "symbol": f"S{i}"} for i in range(n)]


def test_the_amplification_request_is_refused_at_once_saying_the_product_and_the_limit(
    http: httpx.Client, make_payload: Payload
) -> None:
    # The probe's request: a few KB asking 64 series x 512 steps x 256 samples (a 156 MB answer before).
    body = {"series": short_series(make_payload, 64), "pred_len": 512, "sample_count": 256}
    response = http.post("/v1/forecast", json=body)
    assert response.status_code == 422
    assert len(response.content) < 2_000
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert "64 series × 512 steps × 256 samples = 8,388,608 values" in error["message"]
    assert "limit of 1,048,576" in error["message"] and "max_request_values" in error["message"]


def test_ohlc_paths_count_five_times_and_the_limit_itself_is_served(http: httpx.Client, make_payload: Payload) -> None:
    at_limit = {"series": short_series(make_payload, 8), "pred_len": 512, "sample_count": 256}  # = 1,048,576
    answer = http.post("/v1/forecast", json={**at_limit, "include_samples": False})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["forecasts"]) == 8
    with_ohlc = {"series": short_series(make_payload, 2), "pred_len": 512, "sample_count": 256, "include_ohlc": True}
    refused = http.post("/v1/forecast", json=with_ohlc)
    assert refused.status_code == 422
    assert "2 series × 512 steps × 256 samples × 5 (OHLC) = 1,310,720 values" in refused.json()["errors"][0]["message"]


def test_one_series_is_bounded_too() -> None:
    # /predict's one series fits the default bound (512 x 256); a smaller bound holds for it as well.
    small = InferenceSettings(max_request_values=100)
    with pytest.raises(RequestInvalid, match=r"1 series × 10 steps × 11 samples = 110 values"):
        check_request(Settings(inference=small), pred_len=10, sample_count=11, quantile_levels=None, seed=None,
                      n_series=1)  # fmt: skip


def test_the_batch_jobs_default_requests_fit_the_default_bound_comfortably() -> None:
    settings = Settings()
    jobs, limit = settings.jobs, settings.inference.max_request_values
    for pred_len in (jobs.pred_len_1h, jobs.pred_len_1d):
        values = jobs.request_series_per_call * pred_len * jobs.sample_count
        assert values * 10 <= limit
        check_request(settings, pred_len=pred_len, sample_count=jobs.sample_count, quantile_levels=None, seed=1,
                      n_series=jobs.request_series_per_call)  # fmt: skip


STRICT_CASES: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("pred_len true", "/predict", lambda b: {**b, "pred_len": True}, "pred_len"),
    ("pred_len as a string", "/predict", lambda b: {**b, "pred_len": "8"}, "pred_len"),
    ("pred_len as a float", "/predict", lambda b: {**b, "pred_len": 8.0}, "pred_len"),
    ("sample_count false", "/predict", lambda b: {**b, "sample_count": False}, "sample_count"),
    ("seed as a string", "/predict", lambda b: {**b, "seed": "7"}, "seed"),
    ("price true", "/predict", lambda b: {**b, "ohlcv": [[True, *r[1:]] for r in b["ohlcv"]]}, "ohlcv[0][0]"),
    ("price as a string", "/predict", lambda b: {**b, "ohlcv": [["1.5", *r[1:]] for r in b["ohlcv"]]}, "ohlcv[0][0]"),
    ("forecast pred_len true", "/v1/forecast", lambda b: {"series": [b], "pred_len": True}, "pred_len"),
    ("forecast seed list with true", "/v1/forecast", lambda b: {"series": [b], "pred_len": 2, "seed": [True]},
     "seed"),
    ("include_samples as a string", "/v1/forecast",
     lambda b: {"series": [b], "pred_len": 2, "include_samples": "false"}, "include_samples"),
    ("quantile level as a string", "/v1/forecast",
     lambda b: {"series": [b], "pred_len": 2, "quantile_levels": ["0.5"]}, "quantile_levels[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "path", "mutate", "field"), STRICT_CASES, ids=[c[0] for c in STRICT_CASES])
def test_numbers_and_flags_must_be_json_numbers_and_booleans(
    http: httpx.Client, make_payload: Payload, case: str, path: str, mutate: Callable[..., Any], field: str
) -> None:
    base = {**make_payload(30), "pred_len": 3, "sample_count": 4, "seed": 7}
    if path == "/v1/forecast":
        base = make_payload(30)
    response = http.post(path, json=mutate(base))
    assert response.status_code == 422, response.text
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


def test_whole_numbers_still_take_plain_integers_and_prices_integers(http: httpx.Client, make_payload: Payload) -> None:
    body = make_payload(30)
    body["ohlcv"] = [[100, 101, 99, 100, 5, 500]] * 30
    response = http.post("/predict", json={**body, "pred_len": 3, "sample_count": 4, "seed": 7})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_a_json_413(http: httpx.Client, chunked: bool) -> None:
    big = b"[" + b"1," * 200_000 + b"1]"
    content: Any = iter([big[i : i + 65_536] for i in range(0, len(big), 65_536)]) if chunked else big
    response = http.post("/v1/forecast", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "body_too_large",
        "detail": "the request body is over the limit of 300000 bytes (inference.max_body_bytes)",
        "errors": [],
    }


@pytest.mark.parametrize("when", ["1601-01-01T00:00:00Z", "2262-04-12T00:00:00Z", "3263-01-04T19:08:07Z"])
def test_candle_times_outside_the_served_range_are_a_422_naming_the_field(
    http: httpx.Client, make_payload: Payload, when: str
) -> None:
    # found by schemathesis: pandas cannot hold these times, and the request answered 500
    series = make_payload(4)
    series["timestamps"][2] = when
    response = http.post("/v1/forecast", json={"series": [series], "pred_len": 2, "sample_count": 2})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "series[0].timestamps[2]"
    assert "from 1700-01-01 to before 2200-01-01" in error["message"]


def test_a_body_that_is_not_utf8_is_a_json_422_not_a_400(http: httpx.Client) -> None:
    # found by schemathesis: FastAPI's own 400 (plain detail, not in the schema)
    response = http.post("/v1/forecast", content=b"\x1bz$\xff", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["errors"] == [{"field": "body", "message": "could not be parsed as JSON"}]


def test_a_token_is_checked_before_the_body_size(url: str) -> None:
    response = httpx.post(f"{url}/v1/forecast", content=b"x" * 400_000)
    assert response.status_code == 401


def test_the_openapi_schema_describes_every_error_answer(http: httpx.Client, make_payload: Payload, url: str) -> None:
    schema = http.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # 422s are ErrorBody, as answered
    answers = [
        ("post", "/predict", http.post("/predict", json={**make_payload(30), "pred_len": 0})),
        ("post", "/predict", http.post("/predict", json={**make_payload(30), "pred_len": 3, "model": "nope"})),
        ("post", "/v1/forecast", http.post("/v1/forecast", json={"series": []})),
        ("post", "/v1/forecast", http.post("/v1/forecast", content=b"x" * 400_000)),
        ("post", "/v1/forecast", httpx.post(f"{url}/v1/forecast", json={})),
        ("post", "/v1/forecast", httpx.post(f"{url}/v1/forecast", json={}, headers={"Authorization": "Bearer no"})),
        ("get", "/models", httpx.get(f"{url}/models")),
        ("get", "/metrics", httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer no"})),
        ("post", "/admin/reload-adapters", http.post("/admin/reload-adapters", content=b"{not json")),
        ("post", "/admin/reload-adapters", httpx.post(f"{url}/admin/reload-adapters")),
    ]
    error_body = set(schema["components"]["schemas"]["ErrorBody"]["properties"])
    for method, path, response in answers:
        documented = schema["paths"][path][method]["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code, sorted(documented))
        ref = documented[str(response.status_code)]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody") and set(response.json()) == error_body
    assert "503" in schema["paths"]["/health"]["get"]["responses"]
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "example.com", "10.0.0.1"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_the_service_refuses_a_public_address_without_a_token() -> None:
    settings = Settings(models="baseline", inference=InferenceSettings(host="0.0.0.0", port=1))
    with pytest.raises(InputError, match="refusing to listen on 0.0.0.0:1 without a token") as raised:
        serve(settings)  # refused before loading a model or binding the port
    assert raised.value.field == "inference.token"


def test_a_public_address_with_a_token_is_allowed_and_loopback_without_one_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="candlecast.inference"):
        check_exposure(Settings(inference=InferenceSettings(host="0.0.0.0", token="t")))
        assert not caplog.records
        check_exposure(Settings(inference=InferenceSettings(host="127.0.0.1")))
    [record] = caplog.records
    assert "without a token on 127.0.0.1:8200" in record.getMessage()
    assert "CANDLECAST_INFERENCE__TOKEN" in record.getMessage()
