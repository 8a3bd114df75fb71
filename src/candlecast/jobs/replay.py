"""Walk-forward replay: the batch and scoring jobs run at every historical slot, as of that slot.

Each slot sees exactly what the live jobs would have seen at that time: candles closed by the slot (the
store's as-of reads), and scores only from candles closed by the slot. So nothing after a slot can change
its forecast, and the store ends up with the evaluation history a live deployment would have built.

The model is loaded once (``local=True``, the default) or the inference service is called; one
``job_runs`` row (``replay-<model>-<timeframe>``) records the whole replay, and the performance table and the
touch-question summary (``path_performance``) are refreshed once at the end.

Replaying a stretch again rewrites its forecasts, which deletes their scores; scoring at each slot only
restores the steps closed by that slot. When scoring of the timeframe had already reached a later time (an
earlier, longer replay, or live scoring), the replay ends with one more scoring as of that time, so the
store never ends up with fewer scores than before the replay.

The ensemble (``model="ensemble"``, ``jobs/ensemble.py``) is replayed with its members: at each slot every member
model's batch runs first (each model loaded once; a member that cannot be loaded is left out, with the reason in
the run's errors), then scoring as of the slot, then the ensemble of the slot, in the order production runs them
(the scoring job runs before the ensemble of a slot), so its weights see exactly the outcomes production would.
The members' forecasts are rewritten with the same seeds, hence the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.errors import InputError
from candlecast.inference.transports import ForecastTransport, open_transport
from candlecast.jobs.batch import run_batch, slot_time
from candlecast.jobs.ensemble import ENSEMBLE_MODEL, member_models, run_ensemble
from candlecast.jobs.records import recorded_run
from candlecast.jobs.scoring import refresh_performance, run_scoring
from candlecast.jobs.touches import refresh_path_performance
from candlecast.store.candles import list_instruments, timeframe_delta
from candlecast.store.evaluations import scored_through

__all__ = ["ReplayResult", "busiest_window", "replay_slots", "run_replay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    timeframe: str
    model: str
    slots: int
    predictions_written: int
    symbols_failed: int
    steps_scored: int
    duration_s: float
    run_id: int


def busiest_window(engine: Engine, timeframe: str, days: int) -> tuple[datetime, datetime]:
    """The ``days``-long stretch ending at a candle that the most active instruments cover entirely (the
    latest such stretch on ties). Sample data ends at different dates per instrument; this picks where a
    replay evaluates the most of them."""
    spans = []
    for summary in list_instruments(engine, active_only=True):
        first, last = (summary.first_1h, summary.last_1h) if timeframe == "1h" else (summary.first_1d, summary.last_1d)
        if first is not None and last is not None:
            spans.append((first, last))
    if not spans:
        raise ValueError(f"no active instrument has {timeframe} candles to replay")
    length = timedelta(days=days)
    best = max((sum(first <= end - length and last >= end for first, last in spans), end) for _, end in spans)
    end = best[1] + timeframe_delta(timeframe)  # as of the close of that candle
    return end - length, end


def replay_slots(timeframe: str, start: datetime, end: datetime, every: int = 1) -> list[datetime]:
    """Slots from ``start`` to ``end`` (both truncated to the grid, inclusive), every ``every`` candles."""
    if every < 1:
        raise ValueError(f"every must be >= 1, found {every}")
    first, last = slot_time(start, timeframe), slot_time(end, timeframe)
    if last < first:
        raise ValueError(f"the replay ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    step = timeframe_delta(timeframe) * every
    return list(pd.date_range(first, last, freq=step).to_pydatetime())


def run_replay(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    model: str,
    start: datetime,
    end: datetime,
    every: int = 1,
    local: bool = True,
    symbols: Sequence[str] | None = None,
    progress: bool = True,
    transport: ForecastTransport | None = None,
) -> ReplayResult:
    """Batch then score at each slot of ``replay_slots(timeframe, start, end, every)``, in time order.

    ``transport`` reuses an already loaded model (the caller closes it); otherwise one is opened and closed here.
    For ``model="ensemble"`` the member models are opened here (``transport`` must be None) and replayed too; the
    counts are the ensemble's forecasts, the members' are in the run's ``member_forecasts``.
    """
    ensemble = model == ENSEMBLE_MODEL
    if ensemble and transport is not None:
        raise ValueError("the ensemble replay opens its member models itself: pass no transport")
    slots = replay_slots(timeframe, start, end, every)
    written = failed = scored = 0
    member_written: dict[str, int] = {}
    with recorded_run(engine, f"replay-{model}-{timeframe}", as_of=slots[-1]) as run:
        if ensemble:
            transports = _member_transports(settings, local, run.errors)
        else:
            transports = {model: transport if transport is not None else open_transport(settings, model, local)}
        owned = [t for t in transports.values() if t is not transport]
        bar = _bar(progress, f"replay {model} {timeframe}")
        try:
            task = bar.add_task(f"replay {model} {timeframe}", total=len(slots)) if bar else None
            for slot in slots:
                for name, member in transports.items():
                    batch = run_batch(
                        settings, engine, timeframe, name, as_of=slot, symbols=symbols, progress=False,
                        transport=member, record=False,
                    )  # fmt: skip
                    if ensemble:
                        member_written[name] = member_written.get(name, 0) + len(batch.ok)
                        for symbol, error in batch.failed.items():
                            run.errors.setdefault(f"{name} {symbol}", f"{slot.isoformat()}: {error}")
                        continue
                    written += len(batch.ok)
                    failed += len(batch.failed)
                    for symbol, error in batch.failed.items():
                        run.errors.setdefault(symbol, f"{slot.isoformat()}: {error}")
                scored += run_scoring(settings, engine, timeframe, as_of=slot, refresh=False, record=False).steps_scored
                if ensemble:
                    combined = run_ensemble(
                        settings, engine, timeframe, as_of=slot, models=list(transports), symbols=symbols,
                        record=False, gives_samples={n: t.capabilities().gives_samples for n, t in transports.items()},
                    )  # fmt: skip
                    written += len(combined.ok)
                    failed += len(combined.failed)
                    for symbol, error in combined.failed.items():
                        run.errors.setdefault(symbol, f"{slot.isoformat()}: {error}")
                if bar is not None and task is not None:
                    bar.advance(task)
        finally:
            for t in owned:
                t.close()
            if bar is not None:
                bar.stop()
        # Scores of rewritten forecasts whose candles closed after the last slot, up to where scoring had been.
        reached = scored_through(engine, timeframe)
        if reached is not None and reached > slots[-1]:
            catch_up = run_scoring(settings, engine, timeframe, as_of=reached, refresh=False, record=False)
            scored += catch_up.steps_scored
            run.counts["scored_through"] = reached.isoformat()
        refresh_performance(engine, timeframe)
        refresh_path_performance(engine, timeframe)
        run.status = "ok" if not failed else ("partial" if written else "failed")
        run.counts.update(
            slots=len(slots), first_slot=slots[0].isoformat(), predictions_written=written,
            symbols_failed=failed, steps_scored=scored,
        )  # fmt: skip
        if ensemble:
            run.counts["member_forecasts"] = member_written
    log.info("replay %s %s: %d slots, %d forecasts, %d steps scored", model, timeframe, len(slots), written, scored)
    return ReplayResult(timeframe, model, len(slots), written, failed, scored, run.duration_s, run.id)


def _member_transports(settings: Settings, local: bool, errors: dict[str, str]) -> dict[str, ForecastTransport]:
    """The ensemble's member models, each opened once; one that cannot be opened is left out (``errors`` says
    why), and too few members is an error."""
    transports: dict[str, ForecastTransport] = {}
    for name in member_models(settings):
        try:
            transports[name] = open_transport(settings, name, local)
        except Exception as exc:  # e.g. Kronos without its weights: the others are still combined
            errors[name] = f"member left out: {type(exc).__name__}: {exc}"
    needed = settings.ensemble.min_members
    if len(transports) < needed:
        for t in transports.values():
            t.close()
        left_out = "; ".join(f"{m}: {e}" for m, e in errors.items())
        raise InputError(
            "models",
            f"the ensemble needs at least {needed} member models, could open {sorted(transports) or 'none'}"
            + (f" ({left_out})" if left_out else ""),
        )
    return transports


def _bar(enabled: bool, label: str) -> Progress | None:
    if not enabled:
        return None
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    bar.start()
    return bar
