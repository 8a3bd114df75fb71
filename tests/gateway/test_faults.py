"""The gateway under faults: snapshots that fail, a frozen database, unknown-symbol floods."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from tests.gateway import support

SHOWCASE = "/showcase/ml-prediction/BTCUSDT"


def test_a_failed_snapshot_is_logged_and_the_next_one_still_runs(seeded_url: str, tmp_path: Path) -> None:
    snapshot = tmp_path / "cache.json"
    blocker = snapshot.with_name(snapshot.name + ".partial")
    blocker.mkdir()  # writing the partial file fails while this directory is in the way
    settings = support.settings_for(seeded_url, cache_snapshot_path=str(snapshot), cache_snapshot_interval_s=0.05)
    with support.GatewayServer(settings) as gateway:
        assert gateway.get("/showcase/ml-prediction/BTCUSDT").status_code == 200
        support.wait_until(
            lambda: "candlecast_gateway_snapshot_failures_total 2.0" in gateway.app.state.metrics.render().decode(),
            10,
            "the snapshot did not fail twice",
        )
        blocker.rmdir()
        support.wait_until(snapshot.exists, 10, "the snapshot task stopped after a failure")


def test_a_frozen_database_neither_hangs_health_nor_stops_stale_serving(seeded_url: str) -> None:
    target = make_url(seeded_url)
    proxy = support.TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    settings = support.settings_for(
        proxy.url_for(seeded_url), db_timeout_s=0.5, db_read_bound_s=1.0, db_retry_s=0.2, notify_ping_s=0.3
    )
    try:
        with support.GatewayServer(settings) as gateway:
            assert gateway.get(SHOWCASE).status_code == 200
            proxy.freeze()  # connections stay open; nothing answers

            def timed(path: str) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                answer = gateway.get(path)
                return answer, time.monotonic() - started

            health, health_s = timed("/health")
            assert health.status_code == 200 and health_s < 3.0, health_s
            assert health.json()["database"]["up"] is False and health.json()["status"] == "degraded"
            # the listener's watchdog notices the silence: LISTEN no longer says connected
            support.wait_until(
                lambda: gateway.get("/health").json()["database"]["listener"] == "reconnecting",
                5,
                "the LISTEN connection still says connected",
            )
            served, served_s = timed(SHOWCASE)
            assert served.status_code == 200 and served.json()["stale"] is True and served_s < 2.0
            never_cached, never_cached_s = timed("/showcase/ml-prediction/ETHUSDT")
            assert never_cached.status_code == 503 and never_cached_s < 3.0
            proxy.thaw()
            support.wait_until(
                lambda: gateway.get("/health").json()["status"] == "ok", 15, "the gateway did not recover"
            )
    finally:
        proxy.thaw()
        proxy.cut()
