"""Retention of forecast sample paths (``store.keep_samples_days``).

Sample paths (``samples``, and the per-path highs and lows ``samples_high``/``samples_low``) are most of a
forecast row's size (32 paths x 120 steps x 3 arrays of float4 = 46 KB against about 3 KB for the rest).
``prune_samples`` sets them to NULL on forecasts made before the cut-off and stamps ``samples_dropped_at``;
quantiles (served and raw), calibration, provenance, event context and every score stay.

Rules:

- a forecast still in the scoring backlog keeps its samples (its CRPS is not computed yet);
- batches of ``batch_rows`` forecasts, oldest first, each in its own transaction (``FOR UPDATE SKIP LOCKED``: a
  forecast being rewritten is left for the next run), so a run can stop at any point and run again
  (idempotent: pruned rows are not selected again);
- the rows' update does not notify gateways nor queue the forecasts for scoring (the triggers of 0012 skip rows
  with ``samples_dropped_at`` set); a rewrite of the slot brings new samples and clears the stamp.

Readers that need paths (path questions, the ensemble, ``samples=true``) find ``samples`` None and
``samples_dropped_at`` set, and say "samples dropped by retention". ``candlecast score --rescore`` of pruned
forecasts cannot recompute their fair CRPS (it becomes NULL, as for a model without samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from candlecast.store._sql import cursor

__all__ = ["PruneResult", "prune_samples"]


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime  # forecasts made before this lost their samples
    pruned: int  # forecasts whose samples were dropped by this run
    batches: int


def prune_samples(
    engine: Engine,
    keep_days: float,
    now: datetime | None = None,
    batch_rows: int = 2000,
    max_batches: int | None = None,
) -> PruneResult:
    """Drop the sample paths of forecasts made more than ``keep_days`` before ``now`` (default: the clock), in
    batches of ``batch_rows`` (each one transaction); at most ``max_batches`` batches (None: until done)."""
    if keep_days < 0:
        raise ValueError(f"store.keep_samples_days must be >= 0, found {keep_days}")
    if batch_rows < 1:
        raise ValueError(f"store.prune_batch_rows must be >= 1, found {batch_rows}")
    now = datetime.now(UTC) if now is None else now
    cutoff = now - timedelta(days=keep_days)
    sql = """
        WITH chosen AS (
            SELECT p.id, p.as_of FROM ml_predictions p
            WHERE p.as_of < %(cutoff)s AND p.samples IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM scoring_backlog b WHERE b.prediction_id = p.id)
            ORDER BY p.as_of LIMIT %(limit)s FOR UPDATE OF p SKIP LOCKED
        )
        UPDATE ml_predictions m SET samples = NULL, samples_high = NULL, samples_low = NULL,
            samples_dropped_at = now()
        FROM chosen c WHERE m.id = c.id AND m.as_of = c.as_of AND m.as_of < %(cutoff)s"""
    pruned = batches = 0
    while max_batches is None or batches < max_batches:
        with engine.begin() as conn, cursor(conn) as cur:
            cur.execute("SET LOCAL jit = off")
            cur.execute(sql, {"cutoff": cutoff, "limit": batch_rows})
            done = cur.rowcount
        batches += 1
        pruned += done
        if done < batch_rows:
            break
    return PruneResult(cutoff, pruned, batches)
