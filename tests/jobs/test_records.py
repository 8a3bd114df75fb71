"""Job-run records: liveness of 'running' rows, and the exit status of each outcome."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from candlecast.jobs.records import exit_code, recorded_run
from candlecast.store.jobs import close_abandoned_job_runs, recent_job_runs, running_job, start_job_run


def test_a_running_row_is_abandoned_only_once_no_process_holds_it(engine: Engine) -> None:
    orphan = start_job_run(engine, "score-signals-1h")  # a row as a killed process leaves it: no lock held
    with running_job(engine, "baseline-batch-1h") as live:
        assert close_abandoned_job_runs(engine) == [orphan]
        assert close_abandoned_job_runs(engine) == []  # the live run is left alone
        (row,) = recent_job_runs(engine, "baseline-batch-1h")
        assert row.id == live and row.status == "running" and row.finished_at is None
    # the block ended without closing the row (as when the process dies): the next check closes it
    assert close_abandoned_job_runs(engine) == [live]
    for run in recent_job_runs(engine):
        assert run.status == "abandoned" and run.finished_at is not None
        assert run.error is not None and run.error.startswith("abandoned: its process ended")


def test_a_recorded_run_closes_its_row_and_an_abandoned_one_on_the_way(engine: Engine) -> None:
    orphan = start_job_run(engine, "score-signals-1h")
    with pytest.raises(RuntimeError), recorded_run(engine, "score-signals-1h") as run:
        assert run.id != orphan
        raise RuntimeError("boom")
    newest, oldest = recent_job_runs(engine, "score-signals-1h")
    assert (newest.status, newest.error) == ("failed", "RuntimeError: boom")
    assert oldest.id == orphan and oldest.status == "abandoned"


@pytest.mark.parametrize(
    ("status", "code"), [("ok", 0), ("skipped", 0), (None, 0), ("partial", 4), ("failed", 1), ("abandoned", 1)]
)
def test_exit_status_of_each_outcome(status: str | None, code: int) -> None:
    assert exit_code(status) == code
