"""The scoring job: every forecast step whose candle has closed gets its scores, then the performance view is
refreshed.

For a forecast with last close ``c0`` and a step with realised close ``y`` (DESIGN.md, "Scoring definitions"):

- direction hit: ``sign(p50 - c0) == sign(y - c0)`` (a flat p50 hits only a flat outcome);
- in band: ``p10 <= y <= p90``;
- CRPS of the stored sample paths (``scores.crps_from_samples``; NULL when a forecast has no samples);
- pinball loss ``rho_tau(y, q) = max(tau (y - q), (tau - 1)(y - q))`` at 0.1, 0.5, 0.9 (not doubled);
- realised return ``y / c0 - 1`` and strategy return ``sign(p50 - c0) * (y / c0 - 1)``.

All metrics are computed with numpy over whole arrays of steps. Scoring only adds scores for steps that
have none, so running it again is a no-op; rewriting a forecast deletes its scores and it is scored afresh.
One scorer runs per timeframe at a time (an advisory lock; a second one waits).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.records import recorded_run
from candlecast.scores import crps_from_samples, direction_hit, in_band, pinball
from candlecast.store.evaluations import (
    StepsToScore,
    forecast_runs,
    prediction_id_ranges,
    prediction_samples,
    refresh_performance,
    unscored_steps,
    write_evaluations,
)
from candlecast.store.jobs import job_lock
from candlecast.store.schema import TIMEFRAMES

__all__ = ["ScoreResult", "run_scoring", "score_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreResult:
    job_name: str
    timeframe: str
    as_of: datetime
    steps_scored: int
    predictions_scored: int
    duration_s: float
    run_id: int


def score_steps(steps: StepsToScore, samples: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """The score columns of ``steps`` (see the module docstring), ready for ``write_evaluations``."""
    c0, y = steps.last_close, steps.realised_close
    forecast_sign = np.sign(steps.p50 - c0)
    realised_return = y / c0 - 1.0
    return {
        "direction_hit": direction_hit(c0, steps.p50, y),
        "in_band": in_band(y, steps.p10, steps.p90),
        "crps": _crps_of_steps(steps, samples),
        "pinball_10": pinball(y, steps.p10, 0.1),
        "pinball_50": pinball(y, steps.p50, 0.5),
        "pinball_90": pinball(y, steps.p90, 0.9),
        "realised_return": realised_return,
        "strategy_return": forecast_sign * realised_return,
    }


def _crps_of_steps(steps: StepsToScore, samples: dict[int, np.ndarray]) -> np.ndarray:
    """CRPS per step from its forecast's sample column; NaN where the forecast has no samples."""
    crps = np.full(len(steps), np.nan)
    if not len(steps):
        return crps
    ids, owner = forecast_runs(steps.prediction_id)  # steps come ordered by forecast
    # Forecasts with the same (sample_count, pred_len) are stacked into one (P, M, H) block; there is
    # normally a single shape, so this loop runs once.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, pid in enumerate(ids.tolist()):
        if (paths := samples.get(pid)) is not None:
            by_shape.setdefault(paths.shape, []).append(k)
    for members in by_shape.values():
        block = np.stack([samples[int(ids[k])] for k in members])
        position = np.full(len(ids), -1)
        position[members] = np.arange(len(members))
        rows = position[owner]
        selected = (rows >= 0) & (steps.step <= block.shape[2])
        columns = block[rows[selected], :, steps.step[selected] - 1]  # (n_selected, M)
        crps[selected] = crps_from_samples(columns, steps.realised_close[selected])
    return crps


def run_scoring(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    as_of: datetime | None = None,
    since: datetime | None = None,
    refresh: bool = True,
    job_name: str | None = None,
    run_id: int | None = None,
    record: bool = True,
) -> ScoreResult:
    """Score every unscored step of ``timeframe`` forecasts whose candle had closed by ``as_of`` (default now).

    Forecasts made since ``since`` (default ``as_of - jobs.score_lookback_days``) are considered, in chunks of
    ``jobs.score_chunk_predictions``; each chunk commits on its own. Then ``signal_performance`` is refreshed
    concurrently (skip with ``refresh=False``, e.g. between the slots of a replay). One ``job_runs`` row.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {TIMEFRAMES}, found {timeframe!r}")
    as_of = datetime.now(UTC) if as_of is None else as_of
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    since = as_of - timedelta(days=settings.jobs.score_lookback_days) if since is None else since
    job_name = job_name or f"score-signals-{timeframe}"
    with recorded_run(engine, job_name, as_of=as_of, run_id=run_id, record=record) as run:
        n_steps = n_predictions = 0
        # One scorer per timeframe at a time (a manual `score` waits for a scheduled one, then finds less to do).
        with job_lock(engine, f"scoring-{timeframe}", wait=True):
            ranges = prediction_id_ranges(engine, timeframe, since, as_of, settings.jobs.score_chunk_predictions)

            def read(id_range: tuple[int, int]) -> tuple[StepsToScore, dict[int, np.ndarray]]:
                steps = unscored_steps(engine, timeframe, as_of, since, id_range)
                return steps, (prediction_samples(engine, id_range) if len(steps) else {})

            # The next chunk is read (mostly Postgres' work) while this one is scored and written.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-read") as reader:
                upcoming = [reader.submit(read, id_range) for id_range in ranges[:1]]
                for i in range(len(ranges)):
                    steps, samples = upcoming.pop().result()
                    if i + 1 < len(ranges):
                        upcoming.append(reader.submit(read, ranges[i + 1]))
                    if not len(steps):
                        continue
                    scores = score_steps(steps, samples)
                    with engine.begin() as conn:
                        n_steps += write_evaluations(conn, steps, scores)
                    n_predictions += len(forecast_runs(steps.prediction_id)[0])
        if refresh:
            refresh_performance(engine, concurrently=True)
        run.counts.update(steps_scored=n_steps, predictions_scored=n_predictions, chunks=len(ranges))
        level = logging.INFO if record else logging.DEBUG  # a replay logs its own summary
        log.log(level, "%s: scored %d steps of %d forecasts as of %s", job_name, n_steps, n_predictions, as_of)
    return ScoreResult(job_name, timeframe, as_of, n_steps, n_predictions, run.duration_s, run.id)
