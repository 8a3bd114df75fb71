"""Prometheus metrics of one gateway app (its own registry, so several apps can live in one process).

Request metrics are recorded by a plain ASGI middleware (``MetricsMiddleware``); the route label is a
fixed family name taken from the path prefix, so label cardinality stays bounded whatever URLs clients
send. The cached showcase path records its own, through pre-bound children.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["GatewayMetrics", "MetricsMiddleware", "route_family"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def route_family(path: str) -> str:
    if path.startswith("/showcase/"):
        return "showcase"
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/mcp"):
        return "mcp"
    if path.startswith("/static/"):
        return "static"
    if path in ("/health", "/metrics"):
        return path[1:]
    if path == "/" or path.startswith("/symbol/") or path == "/evaluation":
        return "page"
    return "other"


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "candlecast_gateway_requests", "HTTP requests by route family and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "candlecast_gateway_request_duration_seconds",
            "Time to answer, by route family",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "candlecast_gateway_cache", "Cache reads: hit, miss (loaded), stale (served while the DB is away)",
            ["result"], registry=r,
        )  # fmt: skip
        self.notifications = Counter(
            "candlecast_gateway_notifications", "ml_predictions notifications received", registry=r
        )
        self.snapshot_failures = Counter(
            "candlecast_gateway_snapshot_failures", "Cache snapshots that could not be saved", registry=r
        )
        self.db_up = Gauge("candlecast_gateway_database_up", "1 when the last database read succeeded", registry=r)
        self.listening = Gauge(
            "candlecast_gateway_listener_connected", "1 while LISTEN ml_predictions is connected", registry=r
        )
        self.cache_entries = Gauge("candlecast_gateway_cache_entries", "Entries in the response cache", registry=r)
        self.forecast_age = Gauge(
            "candlecast_gateway_newest_forecast_age_seconds",
            "Age of the newest stored forecast (generated_at), per timeframe, as of the last /health",
            ["timeframe"],
            registry=r,
        )
        # pre-bound children for the hot path
        self.showcase_ok = self.requests.labels("showcase", "200")
        self.showcase_not_modified = self.requests.labels("showcase", "304")
        self.showcase_latency = self.latency.labels("showcase")
        self.cache_hit = self.cache.labels("hit")
        self.cache_miss = self.cache.labels("miss")
        self.cache_stale = self.cache.labels("stale")

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request objects beyond a closure)."""

    def __init__(self, app: Any, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            family = route_family(scope["path"])
            self.metrics.requests.labels(family, str(status)).inc()
            self.metrics.latency.labels(family).observe(time.perf_counter() - started)
