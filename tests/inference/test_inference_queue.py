"""Queued work of a client that left, or of a request that timed out, is dropped, never run.

The model is the baseline behind a gate: its calls wait until the test opens the gate, so which requests are
queued behind a running call is certain, whatever the machine's speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from candlecast.config import InferenceSettings, Settings
from candlecast.inference.app import create_app
from candlecast.models.base import SamplePaths, SeriesInput
from candlecast.models.baseline import BaselineForecaster
from candlecast.models.registry import ModelEntry, Registry


class GatedBaseline(BaselineForecaster):
    """The baseline, but each call waits for ``gate``; ``calls`` counts the calls that started."""

    def __init__(self) -> None:
        super().__init__(name="gated")
        self.gate = threading.Event()
        self.calls = 0
        self.started = threading.Event()

    def _sample(
        self,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
        quantile_levels: tuple[float, ...],
    ) -> list[SamplePaths]:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        return super()._sample(series, targets, sample_count, seeds, quantile_levels)


@pytest.fixture
def gated_server(serve_app: Callable[..., Any], request: pytest.FixtureRequest) -> Iterator[tuple[str, GatedBaseline]]:
    model = GatedBaseline()
    registry = Registry([ModelEntry("gated", "baseline", model, None, 0.0)])
    settings = Settings(models="gated", inference=InferenceSettings(request_timeout_s=request.param))
    try:
        with serve_app(create_app(settings, registry=registry)) as url:
            yield url, model
    finally:
        model.gate.set()


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("gated_server", [60.0], indirect=True)
def test_a_client_that_disconnects_leaves_no_work_behind(
    gated_server: tuple[str, GatedBaseline], make_payload: Callable[..., dict[str, Any]], metric: Callable[..., float]
) -> None:
    url, model = gated_server
    body = {**make_payload(30), "pred_len": 3, "seed": 1}
    first: dict[str, int] = {}
    running = threading.Thread(target=lambda: first.update(status=httpx.post(f"{url}/predict", json=body).status_code))
    running.start()
    assert model.started.wait(30)  # the first request holds the model
    with pytest.raises(httpx.ReadTimeout):  # the second waits behind it, then its client gives up
        httpx.post(f"{url}/predict", json=body, timeout=0.3)
    gauge = lambda: metric(httpx.get(f"{url}/metrics").text, "candlecast_inference_queue_depth", model="gated")  # noqa: E731
    assert gauge() == 1
    time.sleep(0.3)  # let the server notice the disconnect
    model.gate.set()
    running.join(30)
    assert first["status"] == 200
    dropped = lambda: metric(httpx.get(f"{url}/metrics").text, "candlecast_inference_dropped_jobs_total", model="gated")  # noqa: E731
    assert wait_for(lambda: dropped() == 1)
    assert gauge() == 0
    assert model.calls == 1  # the abandoned request never reached the model


@pytest.mark.parametrize("gated_server", [1.0], indirect=True)
def test_requests_past_the_timeout_get_504_and_their_queued_work_is_dropped(
    gated_server: tuple[str, GatedBaseline], make_payload: Callable[..., dict[str, Any]], metric: Callable[..., float]
) -> None:
    url, model = gated_server
    body = {**make_payload(30), "pred_len": 3, "seed": 1}
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(httpx.post(f"{url}/predict", json=body).status_code))]
    threads[0].start()
    assert model.started.wait(30)
    threads.append(
        threading.Thread(target=lambda: statuses.append(httpx.post(f"{url}/predict", json=body).status_code))
    )
    threads[1].start()
    for t in threads:
        t.join(30)
    assert statuses == [504, 504]
    assert httpx.get(f"{url}/metrics").status_code == 200
    model.gate.set()
    dropped = lambda: metric(httpx.get(f"{url}/metrics").text, "candlecast_inference_dropped_jobs_total", model="gated")  # noqa: E731
    assert wait_for(lambda: dropped() == 1)
    assert model.calls == 1
    # The service still answers afterwards.
    assert httpx.post(f"{url}/predict", json=body).status_code == 200


@pytest.mark.parametrize("gated_server", [60.0], indirect=True)
def test_a_bad_request_merged_with_good_ones_fails_alone(
    gated_server: tuple[str, GatedBaseline], make_payload: Callable[..., dict[str, Any]], metric: Callable[..., float]
) -> None:
    url, model = gated_server
    good = {**make_payload(30), "pred_len": 3, "seed": 1}
    negative = make_payload(30, seed=2)
    negative["ohlcv"] = [[-abs(x) if x is not None else None for x in row[:4]] for row in negative["ohlcv"]]
    negative["ohlcv"] = [[r[0], max(r[:4]), min(r[:4]), r[3]] for r in negative["ohlcv"]]  # consistent, negative
    bad = {**negative, "pred_len": 3, "seed": 1}
    answers: dict[str, httpx.Response] = {}

    def post(name: str, body: dict[str, Any]) -> None:
        answers[name] = httpx.post(f"{url}/predict", json=body, timeout=60)

    threads = [threading.Thread(target=post, args=("holder", good))]
    threads[0].start()
    assert model.started.wait(30)  # the model is busy: the next two requests queue up together
    threads += [threading.Thread(target=post, args=(n, b)) for n, b in (("good", good), ("bad", bad))]
    for t in threads[1:]:
        t.start()
    gauge = lambda: metric(httpx.get(f"{url}/metrics").text, "candlecast_inference_queue_depth", model="gated")  # noqa: E731
    assert wait_for(lambda: gauge() == 2)
    model.gate.set()
    for t in threads:
        t.join(30)
    assert answers["good"].status_code == 200
    assert answers["bad"].status_code == 422
    assert answers["bad"].json()["errors"] == [
        {"field": "ohlcv", "message": "the baseline needs positive close prices"}
    ]
    assert answers["good"].json() == answers["holder"].json()
    batches = metric(httpx.get(f"{url}/metrics").text, "candlecast_inference_batch_requests_sum", model="gated")
    assert batches == 1 + 2 + 1 + 1  # the holder, the merged pair, then each of the pair alone
