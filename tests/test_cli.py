"""The ``candlecast`` command as a newcomer runs it: errors in one line, a busy port said before any work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from sqlalchemy.engine import Engine

CLI = [sys.executable, "-m", "candlecast.cli"]


def test_a_busy_gateway_port_stops_the_demo_at_once_with_a_hint(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        run = subprocess.run(
            [*CLI, "demo", "--port", str(port)],
            env={**os.environ, "CANDLECAST_DATABASE_URL": db_url},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert run.returncode == 3
    assert time.monotonic() - started < 30  # said before loading data or replaying anything
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]
    assert f"--port {port + 1}" in lines[0] and "CANDLECAST_GATEWAY__PORT" in lines[0]
    assert "replay" not in run.stdout


def test_a_model_without_weights_is_one_line_not_a_traceback(engine: Engine, db_url: str, tmp_path) -> None:
    env = {**os.environ, "CANDLECAST_DATABASE_URL": db_url, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    run = subprocess.run(
        [*CLI, "batch", "-t", "1d", "-m", "kronos-small", "--local", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and "WARNING" not in run.stderr  # said once, not also logged
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ModelUnavailableError" in errors[0] and "kronos-small" in errors[0]


def test_store_prune_says_when_retention_is_off_and_maintain_reports_its_work(engine: Engine, db_url: str) -> None:
    env = {**os.environ, "CANDLECAST_DATABASE_URL": db_url}
    env.pop("CANDLECAST_STORE__KEEP_SAMPLES_DAYS", None)
    off = subprocess.run([*CLI, "store", "prune"], env=env, capture_output=True, text=True, timeout=120)
    assert off.returncode == 2 and "store.keep_samples_days" in off.stderr
    pruned = subprocess.run(
        [*CLI, "store", "prune", "--keep-days", "30"], env=env, capture_output=True, text=True, timeout=120
    )
    assert pruned.returncode == 0 and "samples dropped from 0 forecasts" in pruned.stdout
    kept = subprocess.run([*CLI, "store", "maintain"], env=env, capture_output=True, text=True, timeout=120)
    assert kept.returncode == 0 and "partitions created" in kept.stdout and "retention off" in kept.stdout
