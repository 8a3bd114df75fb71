"""The scheduler: the cron table of ``settings.jobs.cron`` run by APScheduler, one job at a time per name
across every scheduler sharing the database.

Job names say what a job does:

- ``<family>-batch-<1h|1d>``: batch forecasts with a configured model. ``kronos`` means the first configured
  ``kronos-*`` model, ``chronos2`` means ``chronos-2``; any other family is taken as a model name
  (``baseline-batch-1h``). A model that is not configured (``CANDLECAST_MODELS``) leaves the job skipped,
  with a log line.
- ``ensemble-batch-<1h|1d>``: the CRPS-weighted ensemble of the configured models' forecasts of the slot
  (``jobs/ensemble.py``); skipped while fewer than ``ensemble.min_members`` member models are configured. Its cron
  line fires a few minutes after the base batches, within the same slot.
- ``score-signals-<1h|1d>``: the scoring job.
- ``store-maintenance``: partitions of the coming months and retention of old sample paths
  (``jobs/maintenance.py``, docs/store.md).
- ``<family>-rolling-finetune``: the monthly fine-tune of the family's first configured model,
  ``jobs.finetune.run.run_rolling_finetune`` (imported when it runs: torch and peft load only then).

Cron expressions are standard five-field crontab lines in UTC (0 or 7 = Sunday); a six-field line puts a
seconds field first. Each run is guarded twice:

- a Postgres advisory lock per job name (``store.jobs.job_lock``): a run that finds the job running
  elsewhere (another scheduler, a manual ``jobs run``) does nothing;
- a claim of the cron fire time (``job_runs.scheduled_for``, unique per job): of several schedulers that
  fire the same minute, exactly one runs it, even when the first has already finished.

Misfired runs (the process was busy or down) still run within ``jobs.misfire_grace_s``; several missed
fires coalesce into one. SIGTERM or SIGINT stops the scheduler after the running jobs finish.

A scheduler killed mid-job (SIGKILL, a crash, a lost machine) cannot close its ``job_runs`` row; the row's
liveness lock goes with its connection, and the row is marked 'abandoned' when the next scheduler starts, the
next job starts anywhere, or ``jobs list`` runs (``store.jobs.close_abandoned_job_runs``).

External cron: ``candlecast jobs run NAME`` runs one job now (same lock, no claim), so a Kubernetes CronJob,
Railway cron or a systemd timer can replace this scheduler entirely.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.batch import run_batch
from candlecast.jobs.ensemble import ENSEMBLE_MODEL, member_models, run_ensemble
from candlecast.jobs.maintenance import MAINTENANCE_JOB, run_store_maintenance
from candlecast.jobs.records import recorded_run
from candlecast.jobs.scoring import run_scoring
from candlecast.store.jobs import JobRun, close_abandoned_job_runs, job_lock, last_job_runs, running_job

__all__ = [
    "JobOutcome",
    "JobSpec",
    "JobStatus",
    "build_scheduler",
    "job_specs",
    "list_jobs",
    "parse_cron",
    "run_job",
    "run_scheduler",
]

log = logging.getLogger(__name__)

_BATCH = re.compile(r"^(?P<family>[a-z0-9][a-z0-9_.-]*?)-batch-(?P<tf>1h|1d)$")
_SCORE = re.compile(r"^score-signals-(?P<tf>1h|1d)$")
_FINETUNE = re.compile(r"^(?P<family>[a-z0-9][a-z0-9_.-]*?)-rolling-finetune$")
# Job families named otherwise than their model (other families are model names).
_FAMILY_MODELS = {"chronos2": "chronos-2"}
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class JobSpec:
    """One entry of the cron table, resolved against the settings."""

    name: str
    cron: str
    kind: str  # 'batch' | 'ensemble' | 'score' | 'finetune' | 'store'
    timeframe: str | None
    model: str | None
    skip_reason: str | None = None  # set when the job cannot run with these settings


@dataclass(frozen=True)
class JobOutcome:
    """What ``run_job`` did: 'ran' (see ``status``), 'locked', 'claimed' (by another scheduler) or 'skipped'."""

    name: str
    action: str
    status: str | None = None  # job_runs status when it ran
    detail: str = ""
    result: Any = None


@dataclass(frozen=True)
class JobStatus:
    """A line of ``jobs list``."""

    spec: JobSpec
    next_run: datetime | None
    last_run: JobRun | None


def parse_cron(expr: str) -> CronTrigger:
    """A UTC cron trigger from a crontab line: 5 fields (minute hour day month weekday, 0/7 = Sunday) or
    6 fields (seconds first). ValueError names the expression when it is malformed."""
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"cron expression {expr!r}: expected 5 fields (or 6 with seconds first), found {len(fields)}")
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    # APScheduler 3 counts weekdays from Monday = 0; crontab from Sunday = 0. Use names, which both agree on.
    weekday = re.sub(r"(?<![/\d])\d+", lambda m: _CRON_DAYS[int(m.group()) % 7], weekday)
    try:
        return CronTrigger(
            second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=UTC
        )
    except ValueError as exc:
        raise ValueError(f"cron expression {expr!r}: {exc}") from None


def _resolve_model(settings: Settings, family: str) -> tuple[str | None, str | None]:
    """(model, None) for a configured model of ``family``, else (None, why not)."""
    configured = settings.model_names()
    if family == "kronos":
        model = next((m for m in configured if m.startswith("kronos")), None)
        wanted = "a kronos-* model"
    else:
        name = _FAMILY_MODELS.get(family, family)
        model = name if name in configured else None
        wanted = f"model {name!r}"
    if model is None:
        return None, f"{wanted} is not configured (CANDLECAST_MODELS={','.join(configured)})"
    return model, None


def _ensemble_skip_reason(settings: Settings) -> str | None:
    members = member_models(settings)
    needed = settings.ensemble.min_members
    if len(members) >= needed:
        return None
    return f"the ensemble needs at least {needed} member models, found {members or 'none'} (CANDLECAST_MODELS)"


def job_specs(settings: Settings) -> list[JobSpec]:
    """The cron table resolved: kind, timeframe and model of each job, or why it is skipped."""
    specs = []
    for name, cron in settings.jobs.cron.items():
        parse_cron(cron)  # fail early on a bad expression
        if (m := _BATCH.match(name)) and m["family"] == ENSEMBLE_MODEL:
            specs.append(JobSpec(name, cron, "ensemble", m["tf"], ENSEMBLE_MODEL, _ensemble_skip_reason(settings)))
        elif m := _BATCH.match(name):
            model, why = _resolve_model(settings, m["family"])
            specs.append(JobSpec(name, cron, "batch", m["tf"], model, why))
        elif m := _SCORE.match(name):
            specs.append(JobSpec(name, cron, "score", m["tf"], None))
        elif name == MAINTENANCE_JOB:
            specs.append(JobSpec(name, cron, "store", None, None))
        elif m := _FINETUNE.match(name):
            model, why = _resolve_model(settings, m["family"])
            specs.append(JobSpec(name, cron, "finetune", None, model, why))
        else:
            raise ValueError(
                f"jobs.cron: unknown job {name!r}; expected <model>-batch-1h|1d, score-signals-1h|1d, "
                f"{MAINTENANCE_JOB} or <model>-rolling-finetune"
            )
    return specs


def job_spec(settings: Settings, name: str) -> JobSpec:
    for spec in job_specs(settings):
        if spec.name == name:
            return spec
    raise ValueError(f"unknown job {name!r}; the cron table has {sorted(settings.jobs.cron)}")


def run_job(
    settings: Settings,
    engine: Engine,
    name: str,
    scheduled_for: datetime | None = None,
    as_of: datetime | None = None,
    progress: bool = False,
) -> JobOutcome:
    """Run one job of the cron table now, under its advisory lock.

    ``scheduled_for`` (from the scheduler) claims that cron fire first; ``as_of`` overrides the as-of time
    (default: the fire time for batch jobs, now for scoring).
    """
    spec = job_spec(settings, name)
    if spec.skip_reason:
        log.info("job %s skipped: %s", name, spec.skip_reason)
        return JobOutcome(name, "skipped", detail=spec.skip_reason)
    with job_lock(engine, name) as acquired:
        if not acquired:
            log.info("job %s is already running elsewhere; not starting it again", name)
            return JobOutcome(name, "locked", detail="already running elsewhere")
        if scheduled_for is None:  # the job records its own run
            result = _dispatch(settings, engine, spec, None, as_of, progress)
            return JobOutcome(name, "ran", status=getattr(result, "status", "ok"), result=result)
        close_abandoned_job_runs(engine)
        with running_job(engine, name, scheduled_for=scheduled_for) as run_id:
            if run_id is None:
                log.info("job %s for %s already claimed by another scheduler", name, scheduled_for.isoformat())
                return JobOutcome(name, "claimed", detail=f"fire {scheduled_for.isoformat()} ran elsewhere")
            result = _dispatch(settings, engine, spec, run_id, as_of or scheduled_for, progress)
            return JobOutcome(name, "ran", status=getattr(result, "status", "ok"), result=result)


def _dispatch(
    settings: Settings, engine: Engine, spec: JobSpec, run_id: int | None, as_of: datetime | None, progress: bool
) -> Any:
    if spec.kind == "batch":
        assert spec.timeframe is not None and spec.model is not None
        return run_batch(
            settings, engine, spec.timeframe, spec.model, as_of=as_of, local=settings.jobs.local,
            progress=progress, job_name=spec.name, run_id=run_id,
        )  # fmt: skip
    if spec.kind == "ensemble":
        assert spec.timeframe is not None
        return run_ensemble(
            settings, engine, spec.timeframe, as_of=as_of, local=settings.jobs.local, job_name=spec.name, run_id=run_id
        )
    if spec.kind == "score":
        assert spec.timeframe is not None
        return run_scoring(settings, engine, spec.timeframe, as_of=as_of, job_name=spec.name, run_id=run_id)
    if spec.kind == "store":
        return run_store_maintenance(settings, engine, now=as_of, job_name=spec.name, run_id=run_id)
    return _run_finetune(settings, engine, spec, run_id, as_of)


def _run_finetune(settings: Settings, engine: Engine, spec: JobSpec, run_id: int | None, as_of: datetime | None) -> Any:
    assert spec.model is not None
    with recorded_run(engine, spec.name, as_of=as_of, run_id=run_id) as run:
        from candlecast.jobs.finetune.run import run_rolling_finetune  # torch and peft: only when it runs

        result = run_rolling_finetune(settings, engine, base_model=spec.model, as_of=as_of)
        run.status = getattr(result, "status", run.status)  # e.g. 'partial' when one asset class failed
        run.counts.update(getattr(result, "counts", {}))
        run.errors.update(getattr(result, "errors", {}))
        run.counts["result"] = str(result)[:500]
        return run


def _previous_fire(trigger: CronTrigger, now: datetime, window: timedelta) -> datetime | None:
    """The latest fire time of ``trigger`` at or before ``now`` (looking back at most ``window``)."""
    previous = None
    fire = trigger.get_next_fire_time(None, now - window)
    while fire is not None and fire <= now:
        previous = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return previous


def _scheduled_run(settings: Settings, engine: Engine, name: str, trigger: CronTrigger) -> None:
    """What APScheduler calls: claim the fire being run, then run the job; never raises."""
    now = datetime.now(UTC)
    fire = _previous_fire(trigger, now, timedelta(seconds=settings.jobs.misfire_grace_s + 60)) or now
    try:
        outcome = run_job(settings, engine, name, scheduled_for=fire)
        log.info("job %s (%s): %s %s", name, fire.isoformat(), outcome.action, outcome.status or outcome.detail)
    except Exception:
        log.exception("job %s (%s) failed", name, fire.isoformat())


def build_scheduler(settings: Settings, engine: Engine) -> BackgroundScheduler:
    """A (not yet started) scheduler with one cron job per runnable entry of the cron table."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "misfire_grace_time": settings.jobs.misfire_grace_s, "max_instances": 1},
    )
    for spec in job_specs(settings):
        if spec.skip_reason:
            log.info("job %s not scheduled: %s", spec.name, spec.skip_reason)
            continue
        trigger = parse_cron(spec.cron)
        scheduler.add_job(
            _scheduled_run, trigger, args=[settings, engine, spec.name, trigger], id=spec.name, name=spec.name
        )
    return scheduler


def run_scheduler(settings: Settings, engine: Engine, stop: threading.Event | None = None) -> None:
    """Run the cron table until SIGTERM/SIGINT (or ``stop`` is set), then wait for running jobs to finish."""
    stop = stop or threading.Event()
    scheduler = build_scheduler(settings, engine)

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the running jobs finish", signal.Signals(signum).name)
        stop.set()

    close_abandoned_job_runs(engine)  # runs a killed scheduler left 'running'
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, request_stop)
    scheduler.start()
    for job in scheduler.get_jobs():
        log.info("scheduled %s, next run %s", job.id, job.next_run_time)
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("scheduler stopped")


def list_jobs(settings: Settings, engine: Engine, now: datetime | None = None) -> list[JobStatus]:
    """Every job of the cron table with its next fire time (None when skipped) and its newest run (runs left
    'running' by a process that ended are marked 'abandoned' first)."""
    now = now or datetime.now(UTC)
    close_abandoned_job_runs(engine)
    last = last_job_runs(engine)
    out = []
    for spec in job_specs(settings):
        next_run = None if spec.skip_reason else parse_cron(spec.cron).get_next_fire_time(None, now)
        out.append(JobStatus(spec, next_run, last.get(spec.name)))
    return out
