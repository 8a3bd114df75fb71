"""Job-run records (``job_runs``) and the advisory locks that keep a job from running twice at once.

A run is a row: ``start_job_run`` inserts it as 'running', ``finish_job_run`` sets its status
('ok', 'partial', 'failed' or 'skipped'), counts, per-item errors and duration. A scheduled run also carries
the cron fire time it belongs to (``scheduled_for``); a unique index on (job_name, scheduled_for) lets exactly
one of several schedulers claim each fire.

``job_lock`` holds a session-level ``pg_try_advisory_lock`` keyed by the job name on its own connection for
the length of a block; Postgres drops it if the process dies, so a crash never leaves a job locked.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import read_rows

__all__ = [
    "JOB_STATUSES",
    "JobRun",
    "finish_job_run",
    "job_lock",
    "last_job_runs",
    "recent_job_runs",
    "start_job_run",
]

JOB_STATUSES: tuple[str, ...] = ("running", "ok", "partial", "failed", "skipped")
# First key of the two-key advisory lock form: a namespace for job locks (the second key is hashtext(name)).
_LOCK_NAMESPACE = 724102


@dataclass(frozen=True)
class JobRun:
    id: int
    job_name: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    as_of: datetime | None
    counts: dict[str, Any]
    errors: dict[str, Any]
    error: str | None
    host: str | None
    scheduled_for: datetime | None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


_COLUMNS = "id, job_name, started_at, finished_at, status, as_of, counts, errors, error, host, scheduled_for"


def start_job_run(
    engine: Engine,
    job_name: str,
    as_of: datetime | None = None,
    scheduled_for: datetime | None = None,
) -> int | None:
    """Insert a 'running' row and return its id (committed at once, so the run is visible while it works).

    With ``scheduled_for``, returns None when another process already claimed that fire of the job.
    """
    sql = """
        INSERT INTO job_runs (job_name, as_of, scheduled_for, host)
        VALUES (%(job_name)s, %(as_of)s, %(scheduled_for)s, %(host)s)
        ON CONFLICT (job_name, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
        RETURNING id"""
    params = {"job_name": job_name, "as_of": as_of, "scheduled_for": scheduled_for, "host": socket.gethostname()}
    with engine.begin() as conn:
        row = conn.exec_driver_sql(sql, params).first()
    return None if row is None else int(row[0])


def finish_job_run(
    engine: Engine,
    run_id: int,
    status: str,
    counts: dict[str, Any] | None = None,
    errors: dict[str, Any] | None = None,
    error: str | None = None,
    as_of: datetime | None = None,
) -> None:
    """Close a run: its final status, counts, per-item errors (e.g. symbol -> message) and overall error."""
    if status not in JOB_STATUSES or status == "running":
        raise ValueError(f"status must be one of {JOB_STATUSES[1:]}, found {status!r}")
    sql = """
        UPDATE job_runs SET finished_at = clock_timestamp(), status = %(status)s,
            counts = %(counts)s::jsonb, errors = %(errors)s::jsonb, error = %(error)s,
            as_of = coalesce(%(as_of)s, as_of)
        WHERE id = %(id)s"""
    params = {
        "id": run_id,
        "status": status,
        "counts": json.dumps(counts or {}),
        "errors": json.dumps(errors or {}),
        "error": error,
        "as_of": as_of,
    }
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, params)


def recent_job_runs(bind: Engine | Connection, job_name: str | None = None, limit: int = 20) -> list[JobRun]:
    """The newest runs, newest first, of one job or of all jobs."""
    sql = (
        f"SELECT {_COLUMNS} FROM job_runs WHERE (%(name)s::text IS NULL OR job_name = %(name)s) "
        "ORDER BY started_at DESC, id DESC LIMIT %(limit)s"
    )
    names, rows = read_rows(bind, sql, {"name": job_name, "limit": limit})
    return [JobRun(**dict(zip(names, row, strict=True))) for row in rows]


def last_job_runs(bind: Engine | Connection) -> dict[str, JobRun]:
    """The newest run of every job that has run, by job name."""
    sql = f"SELECT DISTINCT ON (job_name) {_COLUMNS} FROM job_runs ORDER BY job_name, started_at DESC, id DESC"
    names, rows = read_rows(bind, sql)
    runs = [JobRun(**dict(zip(names, row, strict=True))) for row in rows]
    return {run.job_name: run for run in runs}


@contextlib.contextmanager
def job_lock(engine: Engine, job_name: str, wait: bool = False) -> Iterator[bool]:
    """Take the advisory lock of ``job_name`` for the block; yields whether it was taken.

    By default never waits: a job already running elsewhere (another scheduler, a manual run) yields False.
    With ``wait=True`` it waits for the lock and always yields True.
    """
    key = (_LOCK_NAMESPACE, job_name)
    function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    with engine.connect() as conn:
        taken = conn.exec_driver_sql(f"SELECT {function}(%s, hashtext(%s))", key).scalar()
        acquired = wait or bool(taken)
        conn.commit()  # the lock is held by the session, not the transaction
        try:
            yield acquired
        finally:
            if acquired:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
                conn.commit()
