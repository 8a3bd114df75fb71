"""One ``job_runs`` row per job run, written as the run starts and closed when it ends, whatever happens."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.store.jobs import finish_job_run, start_job_run

__all__ = ["RunRecord", "recorded_run"]

log = logging.getLogger(__name__)


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
    """A ``job_runs`` row for the block: a new one, or ``run_id`` when a scheduler already claimed it.

    An exception marks the run 'failed' with its message (and is re-raised). With ``record=False`` nothing
    is written (a replay records one run for all its slots) and the record's id is 0.
    """
    if not record:
        yield RunRecord(id=0, job_name=job_name, as_of=as_of)
        return
    if run_id is None:
        run_id = start_job_run(engine, job_name, as_of=as_of)
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
