"""One ``job_runs`` row per job run, written as the run starts and closed when it ends, whatever happens, and
the exit status a command reports for it.

While the run works its process holds the row's liveness lock (``store.jobs.running_job``), so a run whose
process is killed is found and marked 'abandoned' by the next run that starts, the next scheduler start or
``jobs list`` (``close_abandoned_job_runs``).

Exit status of a job command (``EXIT_CODES``): 0 when the run is 'ok' (everything written; symbols skipped for
a stated reason are fine) or 'skipped' (nothing to do, or another run is doing it), 1 when it 'failed' (nothing
was written, or the run itself failed), 4 when it is 'partial' (some items written, some failed).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.store.jobs import close_abandoned_job_runs, finish_job_run, running_job

__all__ = ["EXIT_CODES", "EXIT_FAILED", "EXIT_OK", "EXIT_PARTIAL", "RunRecord", "exit_code", "recorded_run"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 4
EXIT_CODES: dict[str, int] = {"ok": EXIT_OK, "skipped": EXIT_OK, "failed": EXIT_FAILED, "partial": EXIT_PARTIAL}


def exit_code(status: str | None) -> int:
    """The exit status of a command whose run ended with ``status`` (None: it did not run, e.g. locked)."""
    return EXIT_CODES.get(status or "skipped", EXIT_FAILED)


@dataclass
class RunRecord:
    """What a running job reports: set ``status``, fill ``counts`` and ``errors`` (item -> message)."""

    id: int
    job_name: str
    as_of: datetime | None = None
    status: str = "ok"
    counts: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started


@contextlib.contextmanager
def recorded_run(
    engine: Engine, job_name: str, as_of: datetime | None = None, run_id: int | None = None, record: bool = True
) -> Iterator[RunRecord]:
    """A ``job_runs`` row for the block: a new one, or ``run_id`` when a scheduler already claimed it (and
    holds its liveness lock).

    An exception marks the run 'failed' with its message (and is re-raised). With ``record=False`` nothing
    is written (a replay records one run for all its slots) and the record's id is 0.
    """
    if not record:
        yield RunRecord(id=0, job_name=job_name, as_of=as_of)
        return
    with contextlib.ExitStack() as stack:
        if run_id is None:
            close_abandoned_job_runs(engine)
            run_id = stack.enter_context(running_job(engine, job_name, as_of=as_of))
            assert run_id is not None  # only scheduled claims can be refused
        run = RunRecord(id=run_id, job_name=job_name, as_of=as_of)
        try:
            yield run
        except BaseException as exc:
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            run.counts.setdefault("duration_s", round(run.duration_s, 3))
            try:
                finish_job_run(engine, run.id, run.status, run.counts, run.errors, run.error, run.as_of)
            except Exception:  # the database itself may be what failed; never hide the original error
                log.exception("could not record the end of job run %s (%s)", run.id, job_name)
