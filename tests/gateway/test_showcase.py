"""The public showcase route: its contract against the stored rows, its errors, and HTTP caching."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support

from candlecast.store.performance import performance
from candlecast.store.predictions import latest_prediction

SHOWCASE_FIELDS = {
    "symbol", "name", "quote_currency", "model_name", "timeframe", "generated_at", "as_of", "target_timestamps",
    "p10", "p50", "p90", "last_close", "track_record", "data_mode", "data_as_of", "stale", "provenance",
}  # fmt: skip


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_matches_store(body: dict[str, Any], store: Engine, symbol: str, model: str, timeframe: str) -> None:
    stored = latest_prediction(store, symbol, model, timeframe)
    assert stored is not None
    assert set(body) == SHOWCASE_FIELDS
    assert (body["symbol"], body["model_name"], body["timeframe"]) == (symbol, model, timeframe)
    assert ts(body["as_of"]) == stored.as_of
    assert ts(body["generated_at"]) == stored.generated_at
    assert [ts(t) for t in body["target_timestamps"]] == stored.target_ts
    assert all(t.endswith("Z") for t in [body["as_of"], body["generated_at"], *body["target_timestamps"]])
    for name in ("p10", "p50", "p90"):  # rounded to the instrument's precision, nothing else changed
        assert body[name] == support.rounded(getattr(stored, name), stored.last_close)
        np.testing.assert_allclose(body[name], getattr(stored, name), rtol=1e-5)
    assert body["last_close"] == support.rounded(stored.last_close, stored.last_close)[0]
    assert (body["name"], body["quote_currency"]) == support.LABELS[symbol]
    assert (body["data_mode"], body["data_as_of"]) == ("replay", body["as_of"])  # the seeded store is from 2024
    assert body["stale"] is False
    provenance = stored.provenance  # docs/provenance.md; null for rows stored without one
    flagged = None if provenance is None else {**provenance, "inputs_changed": bool(provenance.get("inputs_changed"))}
    assert body["provenance"] == flagged
    record = body["track_record"]  # how this series' past forecasts did (test_track_record.py)
    rows = performance(store, symbol=symbol, model_name=model, timeframe=timeframe, window="trailing_30d")
    assert record["scored_forecasts"] == (rows[0].n_predictions if rows else 0)


def test_showcase_serves_the_newest_stored_forecast_without_a_key(gateway: Any, store: Engine) -> None:
    default = gateway.get("/showcase/ml-prediction/BTCUSDT")
    assert default.status_code == 200
    assert default.headers["content-type"] == "application/json"
    assert_matches_store(default.json(), store, "BTCUSDT", "baseline", "1h")

    other = gateway.get("/showcase/ml-prediction/spy", params={"model_name": "kronos-small"})
    assert other.status_code == 200
    assert_matches_store(other.json(), store, "SPY", "kronos-small", "1h")

    daily = gateway.get("/showcase/ml-prediction/EURUSD", params={"timeframe": "1d"})
    assert_matches_store(daily.json(), store, "EURUSD", "baseline", "1d")


def test_unknown_symbols_and_forecasts_get_404_listing_what_is_available(gateway: Any) -> None:
    unknown = gateway.get("/showcase/ml-prediction/NOPE")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "unknown symbol 'NOPE'", "available": sorted(support.SYMBOLS)}

    no_such_model = gateway.get("/showcase/ml-prediction/BTCUSDT", params={"model_name": "chronos2"})
    assert no_such_model.status_code == 404
    assert no_such_model.json()["detail"] == "no forecast of BTCUSDT by model 'chronos2'"
    assert {"model_name": "kronos-small", "timeframe": "1h"} in no_such_model.json()["available"]

    no_such_timeframe = gateway.get(
        "/showcase/ml-prediction/SPY", params={"model_name": "kronos-small", "timeframe": "1d"}
    )
    assert no_such_timeframe.status_code == 404
    assert no_such_timeframe.json()["detail"] == "no 1d forecast of SPY by model 'kronos-small'"
    assert {"model_name": "baseline", "timeframe": "1d"} in no_such_timeframe.json()["available"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/showcase/ml-prediction/BTC$USD", "symbol"),
        ("/showcase/ml-prediction/" + "A" * 33, "symbol"),
        ("/showcase/ml-prediction/-BTC", "symbol"),
        ("/showcase/ml-prediction/BTCUSDT?timeframe=5m", "timeframe"),
        ("/showcase/ml-prediction/BTCUSDT?model_name=no%20spaces", "model_name"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(gateway: Any, path: str, field: str) -> None:
    response = gateway.get(path)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(field + ":")


def test_etag_and_cache_control_and_304_on_if_none_match(gateway: Any) -> None:
    url = "/showcase/ml-prediction/BTCUSDT"
    first = gateway.get(url)  # a miss: loaded through the FastAPI route
    second = gateway.get(url)  # a hit: answered by the fast path
    assert first.content == second.content
    etag = first.headers["etag"]
    assert second.headers["etag"] == etag
    cache_control = first.headers["cache-control"]
    assert second.headers["cache-control"] == cache_control
    assert "max-age=5" in cache_control and "stale-while-revalidate=60" in cache_control

    not_modified = gateway.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert gateway.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert gateway.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    metrics = gateway.get("/metrics").text
    assert 'candlecast_gateway_cache_total{result="miss"} 1.0' in metrics
    assert 'candlecast_gateway_cache_total{result="hit"} 4.0' in metrics
    assert 'candlecast_gateway_requests_total{route="showcase",status="304"} 2.0' in metrics


def test_etags_are_the_same_on_every_replica(gateway: Any, seeded_url: str) -> None:
    """The ETag is a hash of the body, so a client revalidating against another gateway still gets 304."""
    url = "/showcase/ml-prediction/SPY?model_name=kronos-small"
    etag = gateway.get(url).headers["etag"]
    with support.GatewayServer(support.settings_for(seeded_url)) as other:
        assert other.get(url, headers={"If-None-Match": etag}).status_code == 304
