"""The job commands as a user runs them (Typer's runner, a real database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import typer
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from candlecast.config import get_settings
from candlecast.jobs.cli import register
from candlecast.store.jobs import recent_job_runs

from .conftest import InferenceProcess, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[typer.Typer, CliRunner]]:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CANDLECAST_MODELS", "baseline")
    monkeypatch.setenv("CANDLECAST_JOBS__CONTEXT_1H", "64")
    monkeypatch.setenv("CANDLECAST_JOBS__MIN_CONTEXT_1H", "16")
    get_settings.cache_clear()
    yield app, CliRunner()
    get_settings.cache_clear()


def test_batch_exit_status_is_0_when_all_written_and_1_when_nothing_was_written(cli, engine: Engine) -> None:
    app, runner = cli
    load_market(engine, ["BTCUSDT"], START, 120)
    ok = runner.invoke(app, ["batch", "-t", "1h", "-m", "baseline", "--as-of", "2024-03-04T10:00", "--local",
                             "--no-progress"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "1 written, 0 failed" in ok.output
    stale = runner.invoke(app, ["batch", "-t", "1h", "-m", "baseline", "--as-of", "2025-01-01", "--local",
                                "--no-progress"])  # fmt: skip
    assert stale.exit_code == 1 and "skipped BTCUSDT" in stale.output


def test_batch_exit_status_is_4_when_some_symbols_failed(cli, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    app, runner = cli
    long_ones = [f"SYM{i:02d}" for i in range(12)]
    load_market(engine, long_ones, START, 120)  # 64 candles of context each
    load_market(engine, ["SHORT1", "SHORT2"], START + 100 * H, 20)  # 20 each, ending at the same hour
    # a service that refuses contexts over 32 candles: 12 of 14 symbols fail, each alone
    service = InferenceProcess(CANDLECAST_INFERENCE__MAX_CONTEXT_CANDLES="32")
    monkeypatch.setenv("CANDLECAST_INFERENCE__URL", service.url)
    monkeypatch.setenv("CANDLECAST_JOBS__HTTP_RETRIES", "0")
    get_settings.cache_clear()
    try:
        partial = runner.invoke(app, ["batch", "-t", "1h", "-m", "baseline", "--as-of", (START + 120 * H).isoformat(),
                                      "--no-progress"])  # fmt: skip
    finally:
        service.kill()
    assert partial.exit_code == 4, partial.output
    assert "2 written, 12 failed, 0 skipped" in partial.output and "(partial)" in partial.output
    assert "failed SYM03" in partial.output and "context too long" in partial.output
    run = recent_job_runs(engine, "batch-baseline-1h")[0]
    assert run.status == "partial" and (run.counts["ok"], run.counts["failed"]) == (2, 12)


def test_jobs_run_and_list(cli, engine: Engine) -> None:
    app, runner = cli
    done = runner.invoke(app, ["jobs", "run", "score-signals-1h"])
    assert done.exit_code == 0, done.output
    assert recent_job_runs(engine, "score-signals-1h")[0].status == "ok"
    listed = runner.invoke(app, ["jobs", "list"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0 and "score-signals-1h" in listed.output and "kronos-batch-1h" in listed.output
    # a skipped job's reason is printed whole, however narrow the terminal
    assert "kronos-batch-1h: a kronos-* model is not configured (CANDLECAST_MODELS=baseline)" in listed.output
    bad = runner.invoke(app, ["jobs", "run", "no-such-job"])
    assert bad.exit_code == 2 and "unknown job" in bad.output
