"""Malformed bodies never make the service answer 5xx (hypothesis, against a real server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candlecast.inference.app import create_app

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=40,
)
# Values that are close to valid: numbers at the edges, timestamps, nested rows.
EDGY = st.one_of(
    JSON_VALUES,
    st.sampled_from(
        [
            0,
            -1,
            1,
            2**63,
            1e308,
            -1e308,
            1e-308,
            "2024-01-01T00:00:00Z",
            "2024-01-01",
            "kronos-tiny",
            "baseline",
            "1d",
            "XNYS",
            [],
            [[]],
            [[1, 2, 3, 4]],
            [[None] * 6],
            [0.5, 0.5],
        ]
    ),  # fmt: skip
    st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.none(), max_size=7), max_size=8),
)


@pytest.fixture(scope="module")
def url(serve_app: Callable[..., Any], settings_for: Callable[..., Any]) -> Iterator[str]:
    settings = settings_for(
        "baseline,kronos-tiny,kronos-broken",
        max_pred_len=6,
        max_sample_count=4,
        max_context_candles=40,
        default_sample_count=2,
    )
    with serve_app(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def valid(make_payload: Callable[..., dict[str, Any]]) -> dict[str, dict[str, Any]]:
    one = make_payload(12)
    return {
        "/predict": {**one, "pred_len": 2, "sample_count": 2, "seed": 1},
        "/v1/forecast": {"series": [one, make_payload(8, seed=3)], "pred_len": 2, "seed": 1},
    }


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(route=st.sampled_from(["/predict", "/v1/forecast"]), body=JSON_VALUES)
def test_arbitrary_json_bodies_never_get_a_5xx(http: httpx.Client, route: str, body: Any) -> None:
    check(http.post(route, json=body))


@FUZZ
@given(route=st.sampled_from(["/predict", "/v1/forecast"]), raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_get_a_5xx(http: httpx.Client, route: str, raw: bytes) -> None:
    check(http.post(route, content=raw, headers={"content-type": "application/json"}))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a JSON value (dict keys and list indices), the value itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):  # the first rows are enough
            found += paths(v, (*prefix, i))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    out = list(value)
    out[head] = replaced(value[head], rest, new)
    return out


@FUZZ
@given(route=st.sampled_from(["/predict", "/v1/forecast"]), data=st.data())
def test_valid_bodies_with_one_part_broken_never_get_a_5xx(
    http: httpx.Client, valid: dict[str, dict[str, Any]], route: str, data: st.DataObject
) -> None:
    body = json.loads(json.dumps(valid[route]))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        where = data.draw(st.sampled_from(paths(body)[1:]), label="where")
        body = replaced(body, where, data.draw(EDGY, label="new value"))
    check(http.post(route, json=body))
