"""The cron table, the per-job advisory lock, fire claims, and two schedulers sharing one database."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy.engine import Engine

from candlecast.config import ModelSpec
from candlecast.jobs.batch import slot_time
from candlecast.jobs.scheduler import build_scheduler, job_specs, list_jobs, parse_cron, run_job
from candlecast.store import create_engine_for
from candlecast.store.jobs import close_abandoned_job_runs, job_lock, recent_job_runs, running_runs

from .conftest import job_settings, load_market

FRIDAY = datetime(2024, 3, 1, tzinfo=UTC)
T = TypeVar("T")


def test_cron_lines_use_crontab_weekdays_and_an_optional_seconds_field() -> None:
    assert parse_cron("0 6 * * 1").get_next_fire_time(None, FRIDAY) == datetime(2024, 3, 4, 6, tzinfo=UTC)  # Mon
    assert parse_cron("0 6 * * 0").get_next_fire_time(None, FRIDAY) == datetime(2024, 3, 3, 6, tzinfo=UTC)  # Sun
    assert parse_cron("0 6 * * 7").get_next_fire_time(None, FRIDAY) == datetime(2024, 3, 3, 6, tzinfo=UTC)
    assert parse_cron("*/10 * * * * *").get_next_fire_time(None, FRIDAY + timedelta(seconds=1)) == FRIDAY + timedelta(
        seconds=10
    )
    with pytest.raises(ValueError, match="expected 5 fields"):
        parse_cron("* * *")
    with pytest.raises(ValueError, match="61"):
        parse_cron("61 * * * *")


def test_model_jobs_without_a_configured_model_are_skipped_and_unknown_jobs_refused() -> None:
    specs = {s.name: s for s in job_specs(job_settings())}  # models = baseline
    assert specs["baseline-batch-1h"].model == "baseline" and specs["baseline-batch-1h"].skip_reason is None
    assert "not configured" in (specs["kronos-batch-1h"].skip_reason or "")
    assert "not configured" in (specs["chronos2-batch-1d"].skip_reason or "")
    assert specs["score-signals-1d"].kind == "score" and specs["score-signals-1d"].timeframe == "1d"
    with_kronos = job_settings().model_copy(update={"models": "kronos-small,baseline"})
    assert {s.name: s for s in job_specs(with_kronos)}["kronos-batch-1h"].model == "kronos-small"
    with_chronos = job_settings().model_copy(update={"models": "chronos-2,baseline"})
    assert {s.name: s for s in job_specs(with_chronos)}["chronos2-batch-1d"].model == "chronos-2"
    with pytest.raises(ValueError, match="unknown job 'nightly-backup'"):
        job_specs(job_settings().model_copy(update={"jobs": job_settings().jobs.model_copy(update={"cron": {
            "nightly-backup": "0 3 * * *"}})}))  # fmt: skip


def test_a_job_running_elsewhere_is_not_started_again(engine: Engine) -> None:
    settings = job_settings()
    with job_lock(engine, "score-signals-1h") as held:  # another process is running it
        assert held
        outcome = run_job(settings, engine, "score-signals-1h")
        assert outcome.action == "locked"
        assert run_job(settings, engine, "score-signals-1d").action == "ran"  # other jobs are not blocked
    assert recent_job_runs(engine, "score-signals-1h") == []
    assert run_job(settings, engine, "score-signals-1h").action == "ran"
    assert len(recent_job_runs(engine, "score-signals-1h")) == 1


def test_each_cron_fire_runs_once(engine: Engine) -> None:
    settings = job_settings()
    fire = datetime(2024, 3, 4, 12, 5, tzinfo=UTC)
    assert run_job(settings, engine, "score-signals-1h", scheduled_for=fire).action == "ran"
    assert run_job(settings, engine, "score-signals-1h", scheduled_for=fire).action == "claimed"
    assert run_job(settings, engine, "score-signals-1h", scheduled_for=fire + timedelta(hours=1)).action == "ran"
    (newest, oldest) = recent_job_runs(engine, "score-signals-1h")
    assert (oldest.scheduled_for, newest.scheduled_for) == (fire, fire + timedelta(hours=1))


def test_the_fine_tune_job_runs_for_the_configured_kronos_model_and_records_its_outcome(
    engine: Engine, tmp_path: Path
) -> None:
    absent = ModelSpec(
        name="kronos-absent", kind="kronos", model_source=str(tmp_path / "no-model"),
        tokenizer_source=str(tmp_path / "no-tokenizer"),
    )  # fmt: skip
    settings = job_settings().model_copy(
        update={"models": "baseline,kronos-absent", "model_sources": {"kronos-absent": absent}}
    )
    outcome = run_job(settings, engine, "kronos-rolling-finetune")
    assert outcome.action == "ran" and outcome.status == "failed"
    (run,) = recent_job_runs(engine, "kronos-rolling-finetune")
    assert run.status == "failed" and "cannot fine-tune kronos-absent" in run.errors["base"]
    assert {k: run.counts[k] for k in ("trained", "promoted", "skipped", "failed")} == {
        "trained": 0, "promoted": 0, "skipped": 0, "failed": 1
    }  # fmt: skip


def test_jobs_list_shows_schedule_next_run_and_last_status(engine: Engine) -> None:
    settings = job_settings()
    run_job(settings, engine, "score-signals-1d")
    now = datetime(2024, 3, 4, 12, 7, tzinfo=UTC)
    rows = {row.spec.name: row for row in list_jobs(settings, engine, now=now)}
    assert rows["score-signals-1h"].next_run == datetime(2024, 3, 4, 13, 5, tzinfo=UTC)
    assert rows["score-signals-1h"].last_run is None
    assert rows["score-signals-1d"].last_run is not None and rows["score-signals-1d"].last_run.status == "ok"
    assert rows["kronos-batch-1h"].next_run is None  # skipped: no kronos model configured


def test_two_schedulers_never_run_the_same_job_at_once(
    engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # candles up to the current hour, so every run writes forecasts
    now_slot = slot_time(None, "1h")
    load_market(engine, ["BTCUSDT", "ETHUSDT"], now_slot - timedelta(hours=100), 100)
    settings = job_settings(local=True)
    settings.jobs.cron = {"baseline-batch-1h": "* * * * * *"}  # every second
    engines = [create_engine_for(db_url) for _ in range(2)]  # two "machines"
    schedulers = [build_scheduler(settings, e) for e in engines]
    caplog.set_level(logging.INFO, logger="candlecast.jobs.scheduler")
    try:
        for scheduler in schedulers:
            scheduler.start()
        time.sleep(1.5)
        # Make one run slow: while ml_predictions is locked against writes, the run in progress waits to write
        # its forecasts. The other scheduler's fires in that time must not start a second copy of the job.
        with engine.begin() as conn:
            conn.exec_driver_sql("LOCK TABLE ml_predictions IN EXCLUSIVE MODE")
            time.sleep(2.5)
        time.sleep(1.5)
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)
        for e in engines:
            e.dispose()

    runs = sorted(recent_job_runs(engine, "baseline-batch-1h", limit=100), key=lambda r: r.started_at)
    assert len(runs) >= 3 and all(r.status == "ok" and r.finished_at is not None for r in runs)
    assert len({r.scheduled_for for r in runs}) == len(runs)  # each fire ran once
    for earlier, later in zip(runs, runs[1:], strict=False):  # and never two at a time
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at
    assert any("running elsewhere" in m for m in caplog.messages)


def test_sigterm_stops_the_scheduler_after_the_running_job(db_url: str, engine: Engine) -> None:
    now_slot = slot_time(None, "1h")
    load_market(engine, ["BTCUSDT"], now_slot - timedelta(hours=100), 100)
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from candlecast.config import Settings\n"
        "from candlecast.jobs.scheduler import run_scheduler\n"
        "from candlecast.store import create_engine_for\n"
        "settings = Settings(models='baseline', jobs={'local': True, 'min_context_1h': 16,\n"
        "                    'cron': {'baseline-batch-1h': '* * * * * *'}})\n"
        f"run_scheduler(settings, create_engine_for({db_url!r}))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not recent_job_runs(engine, "baseline-batch-1h") and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "SIGTERM: stopping after the running jobs finish" in output and "scheduler stopped" in output
    runs = recent_job_runs(engine, "baseline-batch-1h")
    assert runs and all(r.status == "ok" and r.finished_at is not None for r in runs)  # none cut short


def _scheduler_process(db_url: str) -> subprocess.Popen[str]:
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from candlecast.config import Settings\n"
        "from candlecast.jobs.scheduler import run_scheduler\n"
        "from candlecast.store import create_engine_for\n"
        "settings = Settings(models='baseline', jobs={'local': True, 'min_context_1h': 16,\n"
        "                    'cron': {'baseline-batch-1h': '* * * * * *'}})\n"
        f"run_scheduler(settings, create_engine_for({db_url!r}))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition: Callable[[], T], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_a_scheduler_killed_mid_job_leaves_a_row_that_is_closed_as_abandoned_and_a_restart_runs_the_job(
    db_url: str, engine: Engine
) -> None:
    now_slot = slot_time(None, "1h")
    load_market(engine, ["BTCUSDT"], now_slot - timedelta(hours=100), 100)
    killed = _scheduler_process(db_url)
    try:
        with engine.connect() as blocker:
            # the job forecasts, then waits to write while ml_predictions is locked against writes: mid-job
            blocker.exec_driver_sql("LOCK TABLE ml_predictions IN EXCLUSIVE MODE")
            (stuck,) = _wait_for(lambda: running_runs(engine), "the scheduled run to start")
            assert close_abandoned_job_runs(engine) == []  # alive: not abandoned
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
            blocker.rollback()
    finally:
        killed.kill()
        killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    (left,) = recent_job_runs(engine, "baseline-batch-1h")
    assert left.id == stuck.id and left.status == "running"  # nobody could close it

    # `jobs list` (list_jobs) finds it abandoned, as soon as Postgres has dropped the dead process's session
    settings = job_settings()
    settings.jobs.cron = {"baseline-batch-1h": "* * * * * *"}
    rows = _wait_for(
        lambda: [r for r in list_jobs(settings, engine) if r.last_run and r.last_run.status == "abandoned"],
        "the killed run to be found abandoned",
        timeout=30,
    )
    assert rows[0].last_run.id == stuck.id and "abandoned" in (rows[0].last_run.error or "")
    assert rows[0].last_run.finished_at is not None
    assert {s for (s,) in _slots(engine)} == set()  # the cut-off write left nothing half-written

    # a restarted scheduler gets the job lock the dead one held and runs the job
    restarted = _scheduler_process(db_url)
    try:
        _wait_for(lambda: [r for r in recent_job_runs(engine, "baseline-batch-1h") if r.status == "ok"], "a new run")
        restarted.send_signal(signal.SIGTERM)
        output, _ = restarted.communicate(timeout=30)
    finally:
        restarted.kill()
    assert restarted.returncode == 0, output
    runs = recent_job_runs(engine, "baseline-batch-1h", limit=100)
    assert [r.status for r in runs if r.id == stuck.id] == ["abandoned"]
    assert all(r.status == "ok" for r in runs if r.id != stuck.id)
    assert {s for (s,) in _slots(engine)} == {"BTCUSDT"}


def _slots(engine: Engine) -> list[tuple[str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT symbol FROM ml_predictions").all()]
