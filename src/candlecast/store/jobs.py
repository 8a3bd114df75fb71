"""Job-run records (``job_runs``) and the advisory locks that keep a job from running twice at once.

A run is a row: ``running_job`` inserts it as 'running' and holds it for the block, ``finish_job_run`` sets its
status ('ok', 'partial', 'failed' or 'skipped'), counts, per-item errors and duration. A scheduled run also
carries the cron fire time it belongs to (``scheduled_for``); a unique index on (job_name, scheduled_for) lets
exactly one of several schedulers claim each fire.

Liveness: the process running a run holds a session-level advisory lock keyed by the run id, on the connection
that inserted the row (taken in the same transaction, so the row is never visible unlocked). Postgres drops the
lock when that connection ends, so a process killed with SIGKILL, crashed, or cut off from the database leaves a
'running' row whose lock nobody holds: ``close_abandoned_job_runs`` marks such rows 'abandoned'. A run that
was only cut off and later finishes still records its real status over 'abandoned'.

``job_lock`` holds a session-level ``pg_try_advisory_lock`` keyed by the job name on its own connection for
the length of a block, and ``slot_lock`` one keyed by (model, timeframe, slot) for batch runs; Postgres drops
them if the process dies, so a crash never leaves a job or a slot locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import read_rows

__all__ = [
    "JOB_STATUSES",
    "JobRun",
    "close_abandoned_job_runs",
    "finish_job_run",
    "job_lock",
    "last_job_runs",
    "recent_job_runs",
    "running_job",
    "running_runs",
    "slot_lock",
    "start_job_run",
]

log = logging.getLogger(__name__)

JOB_STATUSES: tuple[str, ...] = ("running", "ok", "partial", "failed", "skipped", "abandoned")
# First key of the two-key advisory lock form: a namespace for job locks (the second key is hashtext(name)).
_LOCK_NAMESPACE = 724102
# ... and one for the liveness lock of each run (the second key is the run id modulo 2**31).
_RUN_NAMESPACE = 724103
_RUN_KEY_MODULUS = 2**31


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


_INSERT_RUN = """
    INSERT INTO job_runs (job_name, as_of, scheduled_for, host)
    VALUES (%(job_name)s, %(as_of)s, %(scheduled_for)s, %(host)s)
    ON CONFLICT (job_name, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
    RETURNING id"""


def _run_params(job_name: str, as_of: datetime | None, scheduled_for: datetime | None) -> dict[str, Any]:
    return {"job_name": job_name, "as_of": as_of, "scheduled_for": scheduled_for, "host": socket.gethostname()}


def start_job_run(
    engine: Engine,
    job_name: str,
    as_of: datetime | None = None,
    scheduled_for: datetime | None = None,
) -> int | None:
    """Insert a 'running' row and return its id (committed at once, so the run is visible while it works).

    With ``scheduled_for``, returns None when another process already claimed that fire of the job. The row
    holds no liveness lock, so the next ``close_abandoned_job_runs`` closes it: jobs use ``running_job``.
    """
    with engine.begin() as conn:
        row = conn.exec_driver_sql(_INSERT_RUN, _run_params(job_name, as_of, scheduled_for)).first()
    return None if row is None else int(row[0])


@contextlib.contextmanager
def running_job(
    engine: Engine,
    job_name: str,
    as_of: datetime | None = None,
    scheduled_for: datetime | None = None,
) -> Iterator[int | None]:
    """Insert a 'running' row and hold its liveness lock for the block; yields the run id.

    The row is committed at once (the run is visible while it works), with the lock taken in the same
    transaction. With ``scheduled_for``, yields None when another process already claimed that fire of the
    job. Close the run with ``finish_job_run`` inside the block.
    """
    with engine.connect() as conn:
        row = conn.exec_driver_sql(_INSERT_RUN, _run_params(job_name, as_of, scheduled_for)).first()
        if row is None:
            conn.commit()
            yield None
            return
        run_id = int(row[0])
        key = (_RUN_NAMESPACE, run_id % _RUN_KEY_MODULUS)
        conn.exec_driver_sql("SELECT pg_advisory_lock(%s, %s)", key)
        conn.commit()  # the lock is held by the session, not the transaction
        try:
            yield run_id
        finally:
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s, %s)", key)
                conn.commit()
            except Exception:  # the connection is gone, and the lock with it
                log.warning("could not release the liveness lock of job run %s", run_id, exc_info=True)


def close_abandoned_job_runs(bind: Engine | Connection) -> list[int]:
    """Mark 'abandoned' every 'running' row whose process no longer holds its liveness lock; returns their ids.

    Such a run ended without closing its row: its process was killed, crashed, or lost its database connection
    (a run still alive but cut off records its real status when it finishes). ``finished_at`` is the time the
    row was found abandoned, not the time the process stopped, which nobody knows.
    """
    sql = f"""
        UPDATE job_runs r SET status = 'abandoned', finished_at = clock_timestamp(),
            error = concat_ws('; ', r.error, 'abandoned: its process ended (killed, crashed or cut off from the '
                'database) without closing the run; found at ' || to_char(clock_timestamp() AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
        WHERE r.status = 'running' AND NOT EXISTS (
            SELECT 1 FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid = {_RUN_NAMESPACE}::oid AND l.objid = mod(r.id, {_RUN_KEY_MODULUS})::oid)
        RETURNING r.id"""
    if isinstance(bind, Connection):
        rows = bind.exec_driver_sql(sql).all()
    else:
        with bind.begin() as conn:
            rows = conn.exec_driver_sql(sql).all()
    ids = sorted(int(row[0]) for row in rows)
    if ids:
        log.warning("job runs %s were left 'running' by processes that ended; marked 'abandoned'", ids)
    return ids


def running_runs(bind: Engine | Connection, as_of: datetime | None = None) -> list[JobRun]:
    """The runs now marked 'running' (of one as-of time when given), oldest first."""
    sql = (
        f"SELECT {_COLUMNS} FROM job_runs WHERE status = 'running' "
        "AND (%(as_of)s::timestamptz IS NULL OR as_of = %(as_of)s) ORDER BY started_at, id"
    )
    names, rows = read_rows(bind, sql, {"as_of": as_of})
    return [JobRun(**dict(zip(names, row, strict=True))) for row in rows]


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
    if status not in JOB_STATUSES or status in ("running", "abandoned"):
        raise ValueError(f"status must be one of {JOB_STATUSES[1:-1]}, found {status!r}")
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
    with _advisory_lock(engine, "%s, hashtext(%s)", (_LOCK_NAMESPACE, job_name), wait) as acquired:
        yield acquired


@contextlib.contextmanager
def slot_lock(engine: Engine, model: str, timeframe: str, slot: datetime, wait: bool = False) -> Iterator[bool]:
    """Take the advisory lock of one batch slot (model, timeframe, slot time) for the block; yields whether it
    was taken (always True with ``wait=True``)."""
    name = f"slot|{model}|{timeframe}|{slot.astimezone(UTC).isoformat()}"
    # a 63-bit key of its own (the one-key form is a lock space apart from the two-key job locks)
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
    with _advisory_lock(engine, "%s::bigint", (key,), wait) as acquired:
        yield acquired


@contextlib.contextmanager
def _advisory_lock(engine: Engine, args: str, key: tuple[Any, ...], wait: bool) -> Iterator[bool]:
    """A session-level advisory lock on a connection of its own, for the length of a block."""
    function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    with engine.connect() as conn:
        taken = conn.exec_driver_sql(f"SELECT {function}({args})", key).scalar()
        acquired = wait or bool(taken)
        conn.commit()  # the lock is held by the session, not the transaction
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({args})", key)
                    conn.commit()
                except sa.exc.DBAPIError as exc:
                    # The connection died (database restarted): the server dropped the lock with the session.
                    # Raising here would hide the block's own outcome (or its real error).
                    log.warning("advisory lock %s released with its dead connection: %s", key, exc)
