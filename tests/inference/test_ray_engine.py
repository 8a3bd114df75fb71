"""The inference service on Ray Serve answers as the plain server does: same forecasts for the same seeds, same
error bodies, and ``InferenceClient`` works against it unchanged.

A local Ray instance (2 CPUs, bound to 127.0.0.1, no dashboard) runs 2 replicas of the baseline and a tiny
Kronos; the plain server runs the same settings in this process. Skipped only where Ray Serve is not installed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is not installed (pip install 'candlecast[ray]')")
ray_serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install 'candlecast[ray]')")

from tests.inference.conftest import free_port  # noqa: E402

from candlecast.inference.app import create_app  # noqa: E402
from candlecast.inference.client import InferenceClient  # noqa: E402
from candlecast.inference.ray_engine import deploy, local_runtime_env  # noqa: E402
from candlecast.models.base import SeriesInput  # noqa: E402

pytestmark = pytest.mark.slow

TOKEN = "ray-test-token"
Payload = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def services(serve_app: Callable[..., Any], settings_for: Callable[..., Any]) -> Iterator[tuple[str, str]]:
    """(plain URL, Ray Serve URL), both serving the same settings."""
    settings = settings_for(
        "baseline,kronos-tiny,kronos-broken",
        token=TOKEN,
        batch_window_ms=50.0,
        max_body_bytes=200_000,
        max_pred_len=64,
        max_request_values=2_000,
        port=free_port(),
        ray_replica_cpus=0.5,
    )
    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=2,
        object_store_memory=80 * 1024**2,
        _node_ip_address="127.0.0.1",
        runtime_env=local_runtime_env(),
        log_to_driver=False,
    )
    try:
        ray_url = deploy(settings, replicas=2)
        with serve_app(create_app(settings)) as plain_url:
            yield plain_url, ray_url
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def post_both(services: tuple[str, str], path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    plain, ray_ = (httpx.post(f"{base}{path}", headers=headers, timeout=120, **kwargs) for base in services)
    return plain, ray_


def assert_same_forecast(plain: dict[str, Any], ray_: dict[str, Any]) -> None:
    """Same keys, names, timestamps; numbers equal (Kronos: up to float32 rounding across thread counts)."""
    assert plain.keys() == ray_.keys()
    for key, value in plain.items():
        if key in ("samples", "quantiles", "ohlc_samples", "p10", "p50", "p90") and value is not None:
            np.testing.assert_allclose(np.array(ray_[key]), np.array(value), rtol=1e-5)
        elif key == "forecasts":
            for p, r in zip(value, ray_[key], strict=True):
                assert_same_forecast(p, r)
        else:
            assert ray_[key] == value, key


@pytest.mark.parametrize("model", ["baseline", "kronos-tiny"])
def test_predict_answers_equal_the_plain_servers_for_fixed_seeds(
    services: tuple[str, str], make_payload: Payload, model: str
) -> None:
    body = {**make_payload(48, seed=3), "pred_len": 5, "sample_count": 4, "seed": 7, "model": model}
    plain, ray_ = post_both(services, "/predict", json=body)
    assert plain.status_code == ray_.status_code == 200, ray_.text
    assert ray_.json()["model_name"] == model
    assert_same_forecast(plain.json(), ray_.json())
    if model == "baseline":
        assert ray_.json() == plain.json()  # pure numpy: equal to the last bit


def test_forecast_of_many_series_equals_the_plain_servers(services: tuple[str, str], make_payload: Payload) -> None:
    spy = {**make_payload(30, seed=1, start="2024-06-24", freq="B"), "symbol": "SPY", "timeframe": "1d"}
    btc = {**make_payload(40, seed=2), "symbol": "BTCUSDT"}
    for body in (
        {"series": [spy, btc], "pred_len": 3, "sample_count": 5, "seed": [11, 22], "quantile_levels": [0.05, 0.5]},
        {"series": [btc, spy], "pred_len": 2, "sample_count": 3, "seed": 1, "model": "kronos-tiny",
         "include_ohlc": True},
    ):  # fmt: skip
        plain, ray_ = post_both(services, "/v1/forecast", json=body)
        assert plain.status_code == ray_.status_code == 200, ray_.text
        assert_same_forecast(plain.json(), ray_.json())


def test_concurrent_requests_are_batched_and_answer_as_one_by_one(
    services: tuple[str, str], make_payload: Payload, metric: Callable[..., float]
) -> None:
    plain_url, ray_url = services
    bodies = [
        {"series": [{**make_payload(20 + 3 * i, seed=i), "symbol": f"S{i}"}], "pred_len": 3, "sample_count": 4,
         "seed": 100 + i, "model": "kronos-tiny" if i % 2 else "baseline"}
        for i in range(16)
    ]  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    one_by_one = [httpx.post(f"{plain_url}/v1/forecast", json=b, headers=auth, timeout=120).json() for b in bodies]
    start = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> dict[str, Any]:
        start.wait()
        return httpx.post(f"{ray_url}/v1/forecast", json=body, headers=auth, timeout=120).json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(send, bodies))
    for alone, merged in zip(one_by_one, together, strict=True):
        assert_same_forecast(alone, merged)

    # Sequential requests never share a model call; these did, in some replica (each answers /metrics alone).
    def merged_calls() -> float:
        text = httpx.get(f"{ray_url}/metrics", headers=auth).text
        return sum(
            metric(text, "candlecast_inference_batch_requests_count", model=m)
            - metric(text, "candlecast_inference_batch_requests_bucket", model=m, le="1.0")
            for m in ("baseline", "kronos-tiny")
        )

    assert max(merged_calls() for _ in range(12)) > 0


def with_row(payload: dict[str, Any], row: int, values: list[Any]) -> dict[str, Any]:
    ohlcv = [list(r) for r in payload["ohlcv"]]
    ohlcv[row] = values
    return {**payload, "ohlcv": ohlcv}


ERROR_CASES: list[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]], int]] = [
    ("pred_len true", "/predict", lambda b: {**b, "pred_len": True}, 422),
    ("sample_count as a string", "/predict", lambda b: {**b, "sample_count": "8"}, 422),
    ("OHLC inconsistent", "/predict", lambda b: with_row(b, 2, [100, 90, 95, 100, 1, 1]), 422),
    ("unknown model", "/predict", lambda b: {**b, "model": "gpt-9"}, 422),
    ("too much work", "/predict", lambda b: {**b, "pred_len": 60, "sample_count": 40}, 422),
    ("model unavailable", "/predict", lambda b: {**b, "model": "kronos-broken"}, 503),
    ("bad series by index", "/v1/forecast", lambda b: {"series": [b, {**b, "timestamps": b["timestamps"][:-1]}],
                                                       "pred_len": 2}, 422),
]  # fmt: skip


@pytest.mark.parametrize(("case", "path", "mutate", "status"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_answers_are_the_plain_servers(
    services: tuple[str, str], make_payload: Payload, case: str, path: str, mutate: Callable[..., Any], status: int
) -> None:
    body = mutate({**make_payload(48), "pred_len": 5, "sample_count": 4, "seed": 7})
    plain, ray_ = post_both(services, path, json=body)
    assert plain.status_code == ray_.status_code == status, ray_.text
    assert ray_.headers["content-type"] == "application/json"
    assert ray_.json() == plain.json()
    assert set(ray_.json()) == {"error", "detail", "errors"}


def test_auth_body_limit_and_health_answer_as_the_plain_server(services: tuple[str, str]) -> None:
    plain_url, ray_url = services
    for url in services:
        assert httpx.get(f"{url}/health").status_code == 200  # open
    no_token = [httpx.get(f"{u}/models") for u in services]
    assert [r.status_code for r in no_token] == [401, 401] and no_token[0].json() == no_token[1].json()
    assert no_token[1].headers["www-authenticate"] == "Bearer"
    big = b"[" + b"1," * 150_000 + b"1]"
    plain, ray_ = post_both(services, "/v1/forecast", content=big, headers={"content-type": "application/json"})
    assert plain.status_code == ray_.status_code == 413
    assert ray_.json() == plain.json() and ray_.json()["error"] == "body_too_large"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{ray_url}/health").json() == httpx.get(f"{plain_url}/health").json()
    assert httpx.get(f"{ray_url}/models", headers=auth).json() == httpx.get(f"{plain_url}/models", headers=auth).json()


def test_the_inference_client_works_unchanged_against_ray_serve(
    services: tuple[str, str], make_payload: Payload
) -> None:
    series = [
        SeriesInput(timestamps=pd.DatetimeIndex(p["timestamps"]), ohlcv=np.array(p["ohlcv"]), symbol=s)
        for p, s in ((make_payload(60, seed=1), "A"), (make_payload(40, seed=2), "B"))
    ]
    answers = []
    for url in services:
        with InferenceClient(url, token=TOKEN) as client:
            answers.append(client.forecast(series, model="baseline", pred_len=4, sample_count=6, seed=3))
            assert client.models()["default"] == "baseline"
    for plain, ray_ in zip(*answers, strict=True):
        np.testing.assert_array_equal(ray_.samples, plain.samples)
        np.testing.assert_array_equal(ray_.quantiles, plain.quantiles)
        assert ray_.target_timestamps.equals(plain.target_timestamps) and ray_.seed == plain.seed


def test_importing_the_plain_app_does_not_import_ray() -> None:
    code = "import sys, candlecast.inference.app; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
