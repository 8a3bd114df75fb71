"""/health and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from candlecast.store.status import data_freshness


def test_health_reports_database_listener_cache_jobs_and_forecast_age(gateway: Any, store: Engine) -> None:
    gateway.get("/showcase/ml-prediction/BTCUSDT")
    response = gateway.get("/health")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    report = response.json()
    assert report["status"] == "ok"
    assert report["database"]["up"] is True and report["database"]["listener"] == "connected"
    assert report["cache"]["entries"] >= 1
    assert report["jobs"]["score-signals-1h"]["status"] == "ok"
    freshness = data_freshness(store)
    for tf in ("1h", "1d"):
        newest = freshness[tf].newest_generated_at
        assert newest is not None
        assert datetime.fromisoformat(report["forecasts"][tf]["newest_generated_at"]) == newest
        age = (datetime.now(UTC) - newest).total_seconds()
        assert 0 <= report["forecasts"][tf]["newest_forecast_age_s"] <= age
        assert report["forecasts"][tf]["newest_forecast_as_of"] == "2024-03-01T12:00:00Z"


def test_metrics_count_requests_by_route_family_and_status(gateway: Any) -> None:
    for _ in range(3):
        gateway.get("/showcase/ml-prediction/BTCUSDT")
    gateway.get("/showcase/ml-prediction/NOPE")
    gateway.get("/api/v1/jobs")
    gateway.get("/health")
    text = gateway.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def requests(route: str, status: str) -> float:
        return samples[("candlecast_gateway_requests_total", (("route", route), ("status", status)))]

    assert requests("showcase", "200") == 3
    assert requests("showcase", "404") == 1
    assert requests("api", "401") == 1
    assert requests("health", "200") == 1
    assert samples[("candlecast_gateway_request_duration_seconds_count", (("route", "showcase"),))] == 4
    assert samples[("candlecast_gateway_database_up", ())] == 1
    assert samples[("candlecast_gateway_listener_connected", ())] == 1
    assert samples[("candlecast_gateway_newest_forecast_age_seconds", (("timeframe", "1h"),))] > 0
