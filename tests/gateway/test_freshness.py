"""Cache freshness through LISTEN/NOTIFY, and serving from the cache while the database is away."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine, make_url
from tests.gateway import support

from candlecast.store import create_engine_for


@pytest.fixture
def own_store(own_seeded_url: str) -> Any:
    engine = create_engine_for(own_seeded_url)
    yield engine
    engine.dispose()


@pytest.fixture
def own_gateway(own_seeded_url: str) -> Any:
    with support.GatewayServer(support.settings_for(own_seeded_url)) as server:
        yield server


def poll(gateway: Any, url: str, until: Any, deadline_s: float) -> tuple[httpx.Response, float]:
    """GET ``url`` until ``until(response)``; every answer on the way must be a 200. Returns (answer, seconds)."""
    started = time.monotonic()
    while True:
        response = gateway.get(url)
        assert response.status_code == 200, response.text
        if until(response):
            return response, time.monotonic() - started
        assert time.monotonic() - started < deadline_s, f"not seen within {deadline_s} s: {response.text[:200]}"
        time.sleep(0.005)


def test_a_new_forecast_is_served_within_a_second_of_its_insert(own_gateway: Any, own_store: Engine) -> None:
    gateway, store = own_gateway, own_store
    url = "/showcase/ml-prediction/SPY"
    cached = gateway.get(url).json()
    assert gateway.get(url).json() == cached  # now a cache hit
    as_of = datetime.fromisoformat(cached["as_of"]) + timedelta(hours=1)
    newer = support.forecast("SPY", "baseline", "1h", as_of, cached["last_close"], seed=1234)

    support.insert(store, newer)  # committed: the trigger's NOTIFY is delivered now
    fresh, _ = poll(gateway, url, lambda r: r.json()["as_of"] != cached["as_of"], deadline_s=1.0)
    body = fresh.json()
    assert datetime.fromisoformat(body["as_of"]) == as_of
    assert body["p50"] == support.rounded(newer.p50, newer.last_close)
    assert body["stale"] is False

    # rewriting the same slot (an UPDATE) is picked up the same way
    rewritten = support.forecast("SPY", "baseline", "1h", as_of, cached["last_close"], seed=99)
    support.insert(store, rewritten)
    fresh, _ = poll(gateway, url, lambda r: r.json()["p50"] != body["p50"], deadline_s=1.0)
    assert fresh.json()["p50"] == support.rounded(rewritten.p50, rewritten.last_close)


def test_with_the_database_gone_served_symbols_stay_200_and_stale_and_recover(seeded_url: str) -> None:
    target = make_url(seeded_url)
    proxy = support.TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    settings = support.settings_for(proxy.url_for(seeded_url), notify_backoff_max_s=0.2, db_retry_s=0.2)
    with support.GatewayServer(settings) as gw:
        url = "/showcase/ml-prediction/BTCUSDT"
        fresh = gw.get(url)
        assert fresh.status_code == 200 and fresh.json()["stale"] is False
        assert gw.get("/symbol/BTCUSDT").status_code == 200
        assert gw.get("/health").json()["database"]["up"] is True

        proxy.cut()
        stale, _ = poll(gw, url, lambda r: r.json()["stale"] is True, deadline_s=5.0)
        assert {**stale.json(), "stale": False} == fresh.json()
        assert stale.headers["etag"] != fresh.headers["etag"]
        assert "max-age=0" in stale.headers["cache-control"]
        for _ in range(50):  # never a 5xx for what was served before
            again = gw.get(url)
            assert again.status_code == 200 and again.json()["stale"] is True

        page = gw.get("/symbol/BTCUSDT")
        assert page.status_code == 200 and 'id="stale-banner"' in page.text
        never_served = gw.get("/showcase/ml-prediction/SPY")
        assert never_served.status_code == 503 and never_served.headers["retry-after"] == "1"
        assert "database unreachable" in never_served.json()["detail"]
        never_served_page = gw.get("/symbol/SPY")
        assert never_served_page.status_code == 503 and "has not been cached yet" in never_served_page.text
        health = gw.get("/health")
        assert health.status_code == 200
        report = health.json()
        assert report["status"] == "degraded"
        assert report["database"]["up"] is False and report["database"]["listener"] == "reconnecting"

        proxy.restore()
        poll(gw, url, lambda r: r.json()["stale"] is False, deadline_s=10.0)
        assert gw.get("/health").json()["status"] == "ok"
        assert gw.get("/showcase/ml-prediction/SPY").status_code == 200
    proxy.cut()


def test_a_gateway_restarted_while_the_database_is_down_serves_what_it_saved(
    seeded_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="candlecast.gateway.policy")
    target = make_url(seeded_url)
    proxy = support.TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    snapshot = tmp_path / "gateway-cache.json"
    settings = support.settings_for(
        proxy.url_for(seeded_url), cache_snapshot_path=snapshot, db_timeout_s=0.5, db_retry_s=0.2
    )
    url = "/showcase/ml-prediction/BTCUSDT"
    with support.GatewayServer(settings) as first:
        fresh = first.get(url)
        assert fresh.status_code == 200 and fresh.json()["stale"] is False
    assert snapshot.exists()  # written at shutdown
    assert not [r for r in caplog.records if "restored" in r.getMessage()]  # the first start had no file: silence

    proxy.cut()
    with support.GatewayServer(settings) as second:
        restored = [r.getMessage() for r in caplog.records if "restored" in r.getMessage()]
        assert restored == [f"restored 1 cached responses from {snapshot} (stale until the database confirms them)"]
        stale = second.get(url)
        assert stale.status_code == 200 and stale.json()["stale"] is True
        assert {**stale.json(), "stale": False} == fresh.json()
        assert second.get("/showcase/ml-prediction/SPY").status_code == 503  # never served: nothing to fall back on
        proxy.restore()
        poll(second, url, lambda r: r.json()["stale"] is False, deadline_s=10.0)
    proxy.cut()
