"""InferenceClient against a real server: same forecasts as in-process, typed errors, retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from candlecast.errors import InferenceModelUnavailable, InferenceRequestError, InferenceServerError
from candlecast.inference.app import create_app
from candlecast.inference.client import InferenceClient
from candlecast.models.base import SeriesInput
from candlecast.models.baseline import BaselineForecaster

TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def url(serve_app: Callable[..., Any], settings_for: Callable[..., Any]) -> Iterator[str]:
    settings = settings_for("baseline,kronos-tiny,kronos-broken", token=TOKEN)
    with serve_app(create_app(settings)) as base:
        yield base


def as_series(payload: dict[str, Any], symbol: str) -> SeriesInput:
    return SeriesInput(
        timestamps=pd.DatetimeIndex(payload["timestamps"]), ohlcv=np.array(payload["ohlcv"]), symbol=symbol
    )


def test_forecasts_over_http_equal_the_same_model_in_process(url: str, make_payload: Callable[..., Any]) -> None:
    series = [as_series(make_payload(60, seed=1), "A"), as_series(make_payload(40, seed=2), "B")]
    with InferenceClient(url, token=TOKEN) as client:
        remote = client.forecast(series, model="baseline", pred_len=4, sample_count=6, seed=3)
    local = BaselineForecaster().forecast(series, 4, 6, (0.1, 0.5, 0.9), seed=3)
    for r, loc in zip(remote, local, strict=True):
        assert r.symbol == loc.symbol and r.model_name == "baseline"
        np.testing.assert_array_equal(r.samples, loc.samples)
        np.testing.assert_array_equal(r.quantiles, loc.quantiles)
        assert r.target_timestamps.equals(loc.target_timestamps)
        assert r.seed == loc.seed


def test_kronos_forecasts_carry_ohlc_paths(url: str, make_payload: Callable[..., Any]) -> None:
    with InferenceClient(url, token=TOKEN) as client:
        [f] = client.forecast([as_series(make_payload(30), "A")], model="kronos-tiny", pred_len=2, sample_count=3,
                              seed=1, include_ohlc=True)  # fmt: skip
    assert f.ohlc_samples is not None and f.ohlc_samples.shape == (3, 2, 4)
    assert f.model_version.startswith("sha256:")


def test_bad_requests_raise_with_the_fields_and_are_not_retried(url: str, make_payload: Callable[..., Any]) -> None:
    with InferenceClient(url, token=TOKEN, retries=3, backoff_s=5.0) as client:
        with pytest.raises(InferenceRequestError) as info:
            client.forecast([as_series(make_payload(30), "A")], model="baseline", pred_len=100_000)
        assert info.value.status == 422
        assert info.value.errors[0]["field"] == "pred_len"
        with pytest.raises(InferenceModelUnavailable, match="nonexistent"):
            client.forecast([as_series(make_payload(30), "A")], model="kronos-broken", pred_len=2)
    with InferenceClient(url, token="wrong", retries=3, backoff_s=5.0) as client, pytest.raises(InferenceRequestError):
        client.models()  # 403 at once (a retry would have slept 5 s)


def test_an_unreachable_service_raises_a_server_error_without_status_after_the_retries() -> None:
    with InferenceClient("http://127.0.0.1:9", retries=2, backoff_s=0.01, timeout=2) as client:
        with pytest.raises(InferenceServerError) as info:
            client.models()
    assert info.value.status is None


def test_5xx_answers_are_retried_with_backoff_until_one_succeeds() -> None:
    # The one test with a stand-in transport: a real server that fails on demand would only add noise.
    answers = iter([httpx.Response(502), httpx.Response(503, json={"error": "overloaded", "detail": "busy"})])
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return next(answers, httpx.Response(200, json={"default": "baseline", "models": []}))

    with InferenceClient("http://svc", retries=3, backoff_s=0.01, transport=httpx.MockTransport(handler)) as client:
        assert client.models()["default"] == "baseline"
    assert calls == ["/models"] * 3
