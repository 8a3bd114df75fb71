"""The gateway under faults: snapshots that fail, a frozen database, unknown-symbol floods."""

from __future__ import annotations

from pathlib import Path

from tests.gateway import support


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
