"""The store-maintenance job (``store-maintenance`` in the cron table; ``candlecast store maintain`` and
``candlecast store prune``): partitions of the coming months, rows the default partitions caught moved to their
month, and retention of sample paths (``store.keep_samples_days``). Idempotent; one ``job_runs`` row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.records import recorded_run
from candlecast.store.partitions import MaintenanceResult, maintain_partitions
from candlecast.store.retention import PruneResult, prune_samples

__all__ = ["MAINTENANCE_JOB", "MaintenanceOutcome", "run_prune", "run_store_maintenance"]

log = logging.getLogger(__name__)

MAINTENANCE_JOB = "store-maintenance"


@dataclass(frozen=True)
class MaintenanceOutcome:
    partitions: MaintenanceResult | None
    prune: PruneResult | None  # None: retention is off (store.keep_samples_days unset)
    status: str = "ok"


def run_prune(
    settings: Settings, engine: Engine, now: datetime | None = None, keep_days: float | None = None
) -> PruneResult | None:
    """Retention of sample paths with ``keep_days`` (default ``store.keep_samples_days``; None: off)."""
    keep = settings.store.keep_samples_days if keep_days is None else keep_days
    if keep is None:
        return None
    return prune_samples(engine, keep, now=now, batch_rows=settings.store.prune_batch_rows)


def run_store_maintenance(
    settings: Settings,
    engine: Engine,
    now: datetime | None = None,
    job_name: str = MAINTENANCE_JOB,
    run_id: int | None = None,
    partitions: bool = True,
    prune: bool = True,
) -> MaintenanceOutcome:
    """Partitions ahead and moved out of the default partitions, then retention; one ``job_runs`` row."""
    now = datetime.now(UTC) if now is None else now
    with recorded_run(engine, job_name, as_of=now, run_id=run_id) as run:
        kept = maintain_partitions(engine, now, settings.store.partitions_ahead_months) if partitions else None
        pruned = run_prune(settings, engine, now) if prune else None
        if kept is not None:
            run.counts.update(partitions_created=len(kept.created), rows_moved=sum(kept.moved.values()))
        if pruned is not None:
            run.counts.update(samples_pruned=pruned.pruned, prune_batches=pruned.batches)
        log.info("%s: %s", job_name, run.counts)
    return MaintenanceOutcome(kept, pruned)
