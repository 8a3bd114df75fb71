"""The scoring job: every forecast step whose candle has closed gets its scores, then the performance table of
the timeframe (and the summary of its graded touch questions) is recomputed.

For a forecast made at ``as_of`` with last close ``c0`` and a step ``h`` with realised close ``y``
(DESIGN.md, "Scoring definitions"; the maths is in ``candlecast.scores``):

- direction hit: ``sign(p50 - c0) == sign(y - c0)`` (a flat p50 hits only a flat outcome);
- in band: ``p10 <= y <= p90`` of the served band (``in_band``: the stored p10/p90, calibrated by default) and
  of the model's own band (``in_band_raw``: ``p10_raw``/``p90_raw``, or p10/p90 for a forecast that stores none);
- CRPS of the stored sample paths, fair estimator (``scores.crps_from_samples``; NULL without samples);
- ``pit``: the randomized PIT of ``y`` among the step's sample values (``scores.randomized_pit``, its tie-breaking
  uniform fixed per (forecast, step) by ``scores.step_uniform``; NULL without samples): uniform for a calibrated
  forecast, so its histogram checks the whole distribution;
- ``crps_rw``: CRPS of the reference, a driftless log-normal random walk from ``c0`` with sigma = std (ddof 1)
  of the 60 log returns of the candles closed by ``as_of``, times ``sqrt(h)`` (``scores.crps_random_walk``;
  NULL with fewer than 20 returns);
- pinball loss ``rho_tau(y, q) = max(tau (y - q), (tau - 1)(y - q))`` at 0.1, 0.5, 0.9 (not doubled);
- realised return ``y / c0 - 1`` and strategy return ``sign(p50 - c0) * (y / c0 - 1)``.

All metrics are computed with numpy over whole arrays of steps. Scoring looks at the forecasts of the scoring
backlog (``store.evaluations``), so it finds unscored steps of any age, and only adds scores for steps that
have none: running it again is a no-op; rewriting a forecast deletes its scores and it is scored afresh.
One scorer runs per timeframe at a time (an advisory lock; a second one waits).

Path questions are graded in the same pass (``jobs.touches``): a forecast of the backlog whose horizon has
passed with every candle in is asked whether each level of a fixed grid (±1, ±2, ±3 random-walk deviations from
its last close) was touched; the grades (``path_evaluations``) commit with the step scores of the chunk.
Forecasts that left the backlog before grading existed are graded by a re-check (``since``) or ``rescore``.
After the run, their summary per (symbol or all, model, window) is recomputed (``path_performance``,
``jobs.touches.refresh_path_performance``), from all the timeframe's grades.

``refresh_performance`` keeps ``signal_performance`` (see ``performance_rows`` for every column) equal to a
recomputation from all the scores of a timeframe, rewriting in one transaction the rows of the (symbol, model)
series whose scores changed.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Connection, Engine

from candlecast.config import Settings
from candlecast.jobs.performance_state import (
    OutdatedState,
    Summary,
    all_steps_summary,
    dump_state,
    load_state,
    per_forecast_series,
    row_values,
    step_summary,
)
from candlecast.jobs.provenance import check_inputs
from candlecast.jobs.records import recorded_run
from candlecast.jobs.touches import TouchGrades, grade_touches, refresh_path_performance, touch_sigma
from candlecast.scores import (
    RW_RETURNS,
    coverage_interval,
    crps_from_samples,
    crps_random_walk,
    diebold_mariano,
    direction_hit,
    in_band,
    log_return_volatility_by_series,
    newey_west_mean_variance,
    pinball,
    randomized_pit,
    step_uniform,
)
from candlecast.store._copy import pg_datetime
from candlecast.store.candles import timeframe_delta
from candlecast.store.db import snapshot
from candlecast.store.evaluations import (
    StepsToScore,
    advance_scored_through,
    closes_before,
    forecast_runs,
    prediction_samples,
    reopen_forecasts,
    scored_through,
    scoring_candidates,
    unscored_steps,
    write_evaluations,
)
from candlecast.store.jobs import job_lock
from candlecast.store.path_evaluations import forecasts_to_grade, write_path_evaluations
from candlecast.store.performance import (
    PERFORMANCE_WINDOWS,
    TRAILING_WINDOW,
    ScoredSteps,
    count_performance_summaries,
    forget_performance_changes,
    lock_performance,
    oldest_backlog_origin,
    performance_changes,
    read_performance_state,
    read_performance_summaries,
    replace_performance,
    scored_steps,
    write_performance_state,
    write_performance_summaries,
)
from candlecast.store.schema import TIMEFRAMES

__all__ = [
    "PERIODS_PER_YEAR",
    "ScoreResult",
    "performance_rows",
    "random_walk_sigma",
    "refresh_performance",
    "run_scoring",
    "score_steps",
]

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
    forecasts_settled: int = 0  # forecasts that left the backlog (nothing left to score)
    scores_reopened: int = 0  # scores deleted to be computed again (``rescore``)
    touch_questions: int = 0  # graded touch questions written (``path_evaluations``, jobs.touches)
    touch_forecasts: int = 0  # forecasts they belong to
    touch_skipped: int = 0  # forecasts past their horizon not graded: no samples, no volatility, a candle missing


# Sharpe ratios are annualised with this many candles a year.
PERIODS_PER_YEAR: dict[str, int] = {"1h": 8760, "1d": 252}


_Samples = tuple[dict[int, np.ndarray], dict[int, int]]  # a chunk's sample columns and each forecast's first step


def score_steps(
    steps: StepsToScore,
    samples: dict[int, np.ndarray],
    rw_sigma: np.ndarray | None = None,
    first_step: dict[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """The score columns of ``steps`` (see the module docstring), ready for ``write_evaluations``.

    ``samples[id]`` holds forecast ``id``'s sample columns from step ``first_step[id]`` on (all from step 1
    without ``first_step``: the whole paths). ``rw_sigma`` is the random walk's one-candle volatility per step
    (``random_walk_sigma``); without it ``crps_rw`` is NaN (stored as NULL).
    """
    c0, y = steps.last_close, steps.realised_close
    forecast_sign = np.sign(steps.p50 - c0)
    realised_return = y / c0 - 1.0
    served = in_band(y, steps.p10, steps.p90)
    sigma = np.full(len(steps), np.nan) if rw_sigma is None else rw_sigma
    crps, pit = _sample_scores(steps, samples, first_step or {})
    return {
        "direction_hit": direction_hit(c0, steps.p50, y),
        "in_band": served,
        "in_band_raw": in_band(y, steps.p10_raw, steps.p90_raw),
        "crps": crps,
        "crps_rw": crps_random_walk(c0, y, sigma, steps.step),
        "pit": pit,
        "pinball_10": pinball(y, steps.p10, 0.1),
        "pinball_50": pinball(y, steps.p50, 0.5),
        "pinball_90": pinball(y, steps.p90, 0.9),
        "realised_return": realised_return,
        "strategy_return": forecast_sign * realised_return,
    }


def random_walk_sigma(
    steps: StepsToScore, history: dict[str, tuple[np.ndarray, np.ndarray]], timeframe: str
) -> np.ndarray:
    """Per step, the one-candle volatility of its forecast's random-walk reference: the std of the last
    ``RW_RETURNS`` log returns of the candles closed by the forecast origin (``scores.log_return_volatility``),
    from ``history`` (``store.evaluations.closes_before``)."""
    ids, owner = forecast_runs(steps.prediction_id)
    first = np.r_[0, np.flatnonzero(np.diff(owner)) + 1] if len(owner) else np.zeros(0, dtype=np.int64)
    candle_us = int(timeframe_delta(timeframe).total_seconds() * 1_000_000)
    cutoffs = steps.as_of[first] - candle_us  # the open time of the last candle closed by the origin
    symbols = np.array([steps.labels[int(pid)][0] for pid in ids.tolist()], dtype=object)
    return log_return_volatility_by_series(history, symbols, cutoffs)[owner]


def _sample_scores(
    steps: StepsToScore, samples: dict[int, np.ndarray], first_step: dict[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Fair CRPS and randomized PIT per step from its forecast's sample column (column ``step - first_step`` of
    ``samples[id]``); NaN where the forecast has no samples."""
    crps, pit = np.full(len(steps), np.nan), np.full(len(steps), np.nan)
    if not len(steps):
        return crps, pit
    ids, owner = forecast_runs(steps.prediction_id)  # steps come ordered by forecast
    first = np.array([first_step.get(pid, 1) for pid in ids.tolist()], dtype=np.int64)
    column = steps.step - first[owner]  # each step's column in its forecast's samples
    # Forecasts whose samples have the same shape (sample_count, columns) are stacked into one (P, M, C) block;
    # there are few shapes (one in steady state: one new step per forecast), so this loop runs a few times.
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, pid in enumerate(ids.tolist()):
        if (paths := samples.get(pid)) is not None and paths.ndim == 2:
            by_shape.setdefault(paths.shape, []).append(k)
    for members in by_shape.values():
        block = np.stack([samples[int(ids[k])] for k in members])
        position = np.full(len(ids), -1)
        position[members] = np.arange(len(members))
        rows = position[owner]
        selected = (rows >= 0) & (column >= 0) & (column < block.shape[2])
        columns = block[rows[selected], :, column[selected]]  # (n_selected, M)
        y = steps.realised_close[selected]
        crps[selected] = crps_from_samples(columns, y)
        pit[selected] = randomized_pit(columns, y, step_uniform(steps.prediction_id[selected], steps.step[selected]))
    return crps, pit


def _step_ranges(steps: StepsToScore) -> tuple[np.ndarray, np.ndarray]:
    """Per forecast of ``steps`` (in their order): its first and last step to score."""
    _, owner = forecast_runs(steps.prediction_id)
    starts = np.r_[0, np.flatnonzero(np.diff(owner)) + 1]
    return np.minimum.reduceat(steps.step, starts), np.maximum.reduceat(steps.step, starts)


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
    rescore: bool = False,
) -> ScoreResult:
    """Score every unscored step of ``timeframe`` forecasts whose candle had closed by ``as_of`` (default now).

    The forecasts looked at are those of the scoring backlog made by ``as_of``, whatever their age; ``since``
    re-checks every forecast made in ``[since, as_of]`` instead (for candles loaded late into old gaps).
    ``rescore`` first deletes the scores of the forecasts made by ``as_of`` (since ``since`` if given) so they
    are computed again with the current definitions. Forecasts are scored in chunks of
    ``jobs.score_chunk_predictions``; each chunk commits on its own. Then the scoring watermark of the
    timeframe moves to ``as_of`` (if later) and ``signal_performance`` and the touch-question summary
    (``path_performance``, ``jobs.touches.refresh_path_performance``) are recomputed for the timeframe (skip
    both with ``refresh=False``, e.g. between the slots of a replay). One ``job_runs`` row.
    """
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {TIMEFRAMES}, found {timeframe!r}")
    as_of = datetime.now(UTC) if as_of is None else as_of
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    job_name = job_name or f"score-signals-{timeframe}"
    chunk = settings.jobs.score_chunk_predictions
    if chunk < 1:
        raise ValueError(f"jobs.score_chunk_predictions must be >= 1, found {chunk}")
    with recorded_run(engine, job_name, as_of=as_of, run_id=run_id, record=record) as run:
        n_steps = n_predictions = n_settled = reopened = 0
        touch_questions = touch_forecasts = touch_skipped = 0
        # One scorer per timeframe at a time (a manual `score` waits for a scheduled one, then finds less to do).
        with job_lock(engine, f"scoring-{timeframe}", wait=True):
            if rescore:
                with engine.begin() as conn:
                    reopened = reopen_forecasts(conn, timeframe, as_of, since)
                since = None  # the reopened forecasts are in the backlog now
            ids = scoring_candidates(engine, timeframe, as_of, since)
            inputs_changed = check_inputs(engine, ids)  # rewritten input candles are flagged (jobs/provenance.py)
            chunks = [ids[i : i + chunk] for i in range(0, len(ids), chunk)]

            def read(part: np.ndarray) -> tuple[StepsToScore, _Samples, np.ndarray, TouchGrades, int]:
                to_grade, incomplete = forecasts_to_grade(engine, timeframe, as_of, part)
                steps = unscored_steps(engine, timeframe, as_of, part)
                with_steps = forecast_runs(steps.prediction_id)[0] if len(steps) else np.zeros(0, dtype=np.int64)
                # one read of close history serves the random walk of the steps and the touch grid
                needed = np.union1d(with_steps, [f.prediction_id for f in to_grade]).astype(np.int64)
                history = closes_before(engine, timeframe, needed, RW_RETURNS + 1) if len(needed) else {}
                touches = grade_touches(to_grade, touch_sigma(to_grade, history, timeframe))
                if not len(steps):
                    return steps, ({}, {}), np.zeros(0), touches, incomplete
                rw_sigma = random_walk_sigma(steps, history, timeframe)
                first, last = _step_ranges(steps)
                samples = prediction_samples(engine, with_steps, first, last)  # the columns of those steps only
                first_step = dict(zip(with_steps.tolist(), first.tolist(), strict=True))
                return steps, (samples, first_step), rw_sigma, touches, incomplete

            # The next chunk is read (mostly Postgres' work) while this one is scored and written.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score-read") as reader:
                upcoming = [reader.submit(read, part) for part in chunks[:1]]
                for i in range(len(chunks)):
                    steps, (samples, first_step), rw_sigma, touches, incomplete = upcoming.pop().result()
                    if i + 1 < len(chunks):
                        upcoming.append(reader.submit(read, chunks[i + 1]))
                    touch_skipped += incomplete + touches.skipped_no_samples + touches.skipped_no_volatility
                    if not len(steps) and not len(steps.settled_id) and not touches.graded:
                        continue
                    scores = score_steps(steps, samples, rw_sigma, first_step) if len(steps) else {}
                    with engine.begin() as conn:  # step scores and touch grades of the chunk commit together
                        written = write_evaluations(conn, steps, scores)
                        n_touches = write_path_evaluations(conn, touches.columns, touches.graded)
                    n_steps += written.steps
                    n_settled += written.settled
                    n_predictions += len(forecast_runs(steps.prediction_id)[0])
                    touch_questions += n_touches
                    touch_forecasts += len(np.unique(touches.columns["prediction_id"])) if n_touches else 0
            with engine.begin() as conn:
                advance_scored_through(conn, timeframe, as_of)
        if refresh:
            refresh_performance(engine, timeframe)
            refresh_path_performance(engine, timeframe)
        run.counts.update(
            steps_scored=n_steps, predictions_scored=n_predictions, forecasts_checked=len(ids),
            forecasts_settled=n_settled, chunks=len(chunks), inputs_changed=len(inputs_changed),
            touch_questions=touch_questions, touch_forecasts=touch_forecasts, touch_skipped=touch_skipped,
        )  # fmt: skip
        if rescore:
            run.counts["scores_reopened"] = reopened
        level = logging.INFO if record else logging.DEBUG  # a replay logs its own summary
        log.log(level, "%s: scored %d steps of %d forecasts as of %s", job_name, n_steps, n_predictions, as_of)
    return ScoreResult(
        job_name, timeframe, as_of, n_steps, n_predictions, run.duration_s, run.id, n_settled, reopened,
        touch_questions, touch_forecasts, touch_skipped,
    )  # fmt: skip


# -- signal_performance ----------------------------------------------------------------------------


def refresh_performance(engine: Engine, timeframe: str | None = None, full: bool = False) -> int:
    """Recompute the ``signal_performance`` rows of ``timeframe`` (None: every timeframe) whose scores changed.

    Incremental (``jobs.performance_state``), per (symbol, model) series: the scores of a series' forecasts made
    before its boundary (``performance_summaries.through``, a month start at least 35 days before the series'
    newest scored forecast and before the oldest forecast still in the timeframe's scoring backlog) are kept as
    mergeable summaries. A refresh looks only at the series logged in ``performance_changes`` (scores added by
    ``write_evaluations``, deleted or updated: a rewritten or deleted forecast, a rescore): for each it reads its
    summaries and its scores from its boundary on (partition pruning), plus its trailing window when that starts
    before the boundary, rewrites its rows and, when whole months were folded into them, its summaries. The rows
    and summaries of the other series stay as they are, so the cost follows the series that gained scores, not
    the number of series. A logged change older than a series' boundary, or a longer horizon than its summaries
    keep lags for, recomputes that series from all its scores; a TRUNCATE of the scores, a timeframe never
    refreshed incrementally, or ``full`` recomputes every series, as ``performance_rows`` does. The results are
    the same up to floating-point rounding.

    Each timeframe is refreshed in one REPEATABLE READ transaction that first takes the table's refresh lock:
    readers keep seeing the previous rows until it commits, two refreshes never interleave (the snapshot is
    taken after the lock, so the second one sees what the first wrote), and the rows come from one
    consistent snapshot of the scores. ``refreshed_from`` is the timeframe's scoring watermark
    (``scoring_state``), kept per timeframe (``performance_state``) since the rows of unchanged series reflect it
    as well. Returns the rows written.
    """
    written = 0
    for tf in TIMEFRAMES if timeframe is None else (timeframe,):
        with snapshot(engine) as conn:
            lock_performance(conn)  # before the first query, which takes the snapshot
            written += _refresh_timeframe(conn, tf, full)
    return written


_FOLD_MARGIN = timedelta(days=35)  # scores of forecasts this much older than the newest are folded (by month)
_YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)  # before every origin
_US = timedelta(microseconds=1)

_Pair = tuple[str, str]  # (symbol, model_name)


class _Rebuild(Exception):
    """The stored summaries cannot be extended (they keep fewer lags than a longer horizon needs, or are of an older
    layout)."""


def _refresh_timeframe(conn: Connection, timeframe: str, full: bool) -> int:
    changes = performance_changes(conn, timeframe)
    everything = full or changes.everything or read_performance_state(conn, timeframe) is None
    refreshed_from = scored_through(conn, timeframe)
    if everything:
        rows, summaries = _series_rows(conn, timeframe, None, {})
        written = replace_performance(conn, timeframe, rows, refreshed_from)
        write_performance_summaries(conn, timeframe, summaries, replace_all=True)
    else:
        series = sorted(changes.oldest)
        # a series whose scores changed before its boundary starts again from all its scores
        stored = {
            pair: kept for pair, kept in read_performance_summaries(conn, timeframe, series).items()
            if changes.oldest[pair] >= kept[0]
        }  # fmt: skip
        rows, summaries = _series_rows(conn, timeframe, series, stored) if series else ([], {})
        written = replace_performance(conn, timeframe, rows, refreshed_from, series)
        write_performance_summaries(conn, timeframe, summaries)
    write_performance_state(conn, timeframe, refreshed_from, rebuilt=everything)
    forget_performance_changes(conn, changes.ids)
    return written


def _month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _blocks(scored: ScoredSteps) -> dict[_Pair, dict[str, np.ndarray]]:
    """The scored steps of each (symbol, model), ordered by step, then origin."""
    order = np.lexsort((scored.as_of, scored.step, scored.group))
    columns = {name: getattr(scored, name)[order] for name in _SCORED_COLUMNS}
    group = columns["group"]
    return {
        scored.groups[int(group[start])]: {name: values[start:end] for name, values in columns.items()}
        for start, end in _runs(group)
    }


def _series_rows(
    conn: Connection, timeframe: str, series: list[_Pair] | None, stored: dict[_Pair, tuple[datetime, bytes]]
) -> tuple[list[dict[str, Any]], dict[_Pair, tuple[datetime, bytes] | None]]:
    """The rows of the listed series (None: every series, from all scores), from their ``stored`` summaries and
    boundaries (a series without: from all its scores) and their scores since; and the new summaries of the
    series whose summaries changed (None: the series has no scores any more)."""
    if series is None:
        blocks = _blocks(scored_steps(conn, timeframe))
        series = sorted(blocks)
    else:
        blocks = {}
        resumed = [(p[0], p[1], stored[p][0] - _US) for p in series if p in stored]  # scores from the boundary on
        fresh = [(p[0], p[1], _YEAR_ONE) for p in series if p not in stored]
        if (
            resumed
            and len({w[2] for w in resumed}) == 1
            and len(resumed) == count_performance_summaries(conn, timeframe)
        ):
            # every stored series, one boundary (the hourly case): one scan from it, no per-series filter
            blocks.update(_blocks(scored_steps(conn, timeframe, since=resumed[0][2] + _US)))
        elif resumed:
            blocks.update(_blocks(scored_steps(conn, timeframe, windows=resumed)))
        if fresh:  # their scores since year one replace any read above
            blocks.update(_blocks(scored_steps(conn, timeframe, windows=fresh)))
    backlog = oldest_backlog_origin(conn, timeframe)
    rows: list[dict[str, Any]] = []
    summaries: dict[_Pair, tuple[datetime, bytes] | None] = {}
    trailing_needed: dict[_Pair, tuple[int, int]] = {}  # pair -> (cutoff, lag) read separately
    rebuild = []
    for pair in series:
        try:
            result = _one_series(pair, blocks.get(pair), stored.get(pair), backlog, timeframe)
        except _Rebuild:
            rebuild.append(pair)
            continue
        rows += result[0]
        if result[1] is not _UNCHANGED:
            summaries[pair] = result[1]
        if result[2] is not None:
            trailing_needed[pair] = result[2]
    if rebuild:
        again = _blocks(scored_steps(conn, timeframe, windows=[(p[0], p[1], _YEAR_ONE) for p in rebuild]))
        for pair in rebuild:
            part_rows, summaries[pair], trailing = _one_series(pair, again.get(pair), None, backlog, timeframe)
            rows += part_rows
            if trailing is not None:
                trailing_needed[pair] = trailing
    if trailing_needed:
        windows = [(p[0], p[1], pg_datetime(c)) for p, (c, _) in trailing_needed.items()]
        periods = PERIODS_PER_YEAR[timeframe]
        for pair, block in _blocks(scored_steps(conn, timeframe, windows=windows)).items():
            cutoff, lag = trailing_needed[pair]
            rows += _window_rows(block, (*pair, "trailing_30d"), cutoff, periods, lag)
    return rows, summaries


_UNCHANGED: Any = object()  # a series' summaries did not change


def _one_series(
    pair: _Pair,
    block: dict[str, np.ndarray] | None,
    stored: tuple[datetime, bytes] | None,
    backlog: datetime | None,
    timeframe: str,
) -> tuple[list[dict[str, Any]], Any, tuple[int, int] | None]:
    """One series' rows from its stored summaries (None: none) and its scores from their boundary on (``block``,
    ordered by step, then origin; None: none); its new (boundary, summaries), None when it has no scores any more,
    or ``_UNCHANGED``; and (cutoff, lag) when its trailing window starts before the boundary and must be read."""
    periods = PERIODS_PER_YEAR[timeframe]
    span = int(TRAILING_WINDOW.total_seconds() * 1_000_000)
    through, prefix = (None, {}) if stored is None else (stored[0], _load(stored[1]))
    kept = prefix.get(0)
    if block is None and kept is None:
        return [], None, None
    # the new boundary: whole months, old enough, and no forecast that may still gain scores after it
    boundary = through
    if block is not None:
        candidate = pg_datetime(int(block["as_of"].max())) - _FOLD_MARGIN
        if backlog is not None:
            candidate = min(candidate, backlog)
        candidate = _month_start(candidate)
        boundary = candidate if through is None else max(through, candidate)
    assert boundary is not None
    boundary_raw = _raw(boundary)
    never = -(2**62)
    newest_raw = max(
        int(block["as_of"].max()) if block is not None else never,
        kept.last if kept is not None and kept.last is not None else never,
    )
    max_step = max(int(block["step"].max()) if block is not None else 0, kept.max_step if kept else 0)
    lag = max_step - 1
    if kept is not None and kept.d.lag < lag:
        raise _Rebuild
    series_lag = kept.d.lag if kept is not None else lag
    folded = dict(prefix)
    changed = stored is None or boundary != through
    old_part = rest = None
    if block is not None:
        early = block["as_of"] < boundary_raw
        if early.any():
            old_part = {name: values[early] for name, values in block.items()}
            changed = True
        rest = {name: values[~early] for name, values in block.items()}
    rows: list[dict[str, Any]] = []
    # 'all': the summaries, extended by the folded scores, then by the rest
    for h in [0, *sorted({h for h in prefix if h} | _steps_of(block))]:
        base = folded.get(h)
        if old_part is not None:
            piece = _summary(old_part, h, series_lag)
            if piece is not None:
                base = piece if base is None else base.then(piece)
                folded[h] = base
        latest = _summary(rest, h, series_lag) if rest is not None else None
        total = base if latest is None else latest if base is None else base.then(latest)
        if total is None:
            continue
        row_lag = lag if h == 0 else h - 1
        rows.append({"symbol": pair[0], "model_name": pair[1], "window_name": "all", "step": h,
                     **row_values(total, periods / max(h, 1), row_lag, pg_datetime)})  # fmt: skip
    cutoff = newest_raw - span
    trailing = None
    if cutoff >= boundary_raw - 1:
        if rest is not None:
            rows += _window_rows(rest, (*pair, "trailing_30d"), cutoff, periods, lag)
    else:
        trailing = (cutoff, lag)
    return rows, ((boundary, dump_state(folded)) if changed else _UNCHANGED), trailing


def _load(state: bytes) -> dict[int, Summary]:
    try:
        return load_state(state)
    except OutdatedState:  # written before a layout change: the series starts again from all its scores
        raise _Rebuild from None


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal values."""
    if not len(values):
        return []
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return list(zip(starts.tolist(), np.r_[starts[1:], len(values)].tolist(), strict=True))


def _steps_of(block: dict[str, np.ndarray] | None) -> set[int]:
    return set() if block is None else {int(h) for h in np.unique(block["step"])}


def _summary(part: dict[str, np.ndarray], h: int, lag: int) -> Summary | None:
    """The summary of step ``h`` (0: all steps, their per-forecast series kept with ``lag`` lags) of ``part``
    (ordered by step, then origin); None when it has no such step."""
    if h == 0:
        return all_steps_summary(part, lag) if len(part["step"]) else None
    lo, hi = np.searchsorted(part["step"], [h, h + 1])
    if hi <= lo:
        return None
    return step_summary({name: values[lo:hi] for name, values in part.items()}, h)


def _raw(moment: datetime) -> int:
    """A datetime as a raw Postgres timestamp (microseconds since 2000-01-01 UTC)."""
    return (moment - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def performance_rows(scored: ScoredSteps, timeframe: str) -> list[dict[str, Any]]:
    """The ``signal_performance`` rows of one timeframe, per (symbol, model, window, step), step 0 = all steps.

    Over the scored steps of the row (forecasts of the window; for a step row, that step only):

    - ``n_predictions`` forecasts and ``n_steps`` steps; ``hit_rate``, ``coverage`` (served band) and
      ``coverage_raw`` (the model's band): shares of the steps;
    - ``mean_crps``: mean fair CRPS over the steps with samples; ``crps_bp``: mean of CRPS / last close,
      in basis points;
    - ``mean_crps_rw`` and ``crps_skill = 1 - sum(crps) / sum(crps_rw)`` (a ratio of means) over the steps that
      have both CRPS, so model and random walk are compared on the same origins and horizons;
    - ``coverage_low``, ``coverage_high``: a 90% interval of ``coverage`` (``scores.coverage_interval``), from the
      Newey–West variance of the mean of the in-band indicator over the row's steps in origin order (a step
      row) or of each forecast's share of its steps in the band (the all-steps row), with the lags of the
      Diebold–Mariano test below: forecasts that overlap share outcomes, so a coverage is known far less well
      than its number of steps suggests;
    - ``dm_stat``, ``dm_pvalue``: Diebold–Mariano test of ``d = crps - crps_rw`` over those steps ordered by
      forecast origin, with a Newey–West variance of ``h - 1`` lags for step ``h`` (forecasts ``h`` steps
      ahead made every candle overlap ``h - 1`` candles). The all-steps row tests each forecast's mean of
      ``d`` over its steps, with ``H - 1`` lags for the longest horizon ``H`` scored;
    - ``mean_pinball``: mean of the three pinball losses;
    - ``mean_strategy_return`` and ``sharpe`` (mean / sample std, annualised with ``PERIODS_PER_YEAR``): for
      the all-steps row, of the step-1 strategy returns (one trade per slot, as before per-step rows existed);
      for step ``h``, of the step-``h`` returns, annualised by ``sqrt(periods / h)`` (an ``h``-candle trade);
    - ``first_as_of``, ``last_as_of``: the oldest and newest forecast origin.

    Windows: ``all``, and ``trailing_30d``, the forecasts made in the 30 days before the newest scored forecast
    of the (symbol, model). Values that cannot be computed are NaN (stored as NULL).
    """
    if not len(scored):
        return []
    periods = PERIODS_PER_YEAR[timeframe]
    span = int(TRAILING_WINDOW.total_seconds() * 1_000_000)
    order = np.lexsort((scored.as_of, scored.step, scored.group))  # by group, step, then forecast origin
    columns = {name: getattr(scored, name)[order] for name in _SCORED_COLUMNS}
    group = columns["group"]
    group_starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    group_ends = np.r_[group_starts[1:], len(group)]
    rows = []
    for start, end in zip(group_starts.tolist(), group_ends.tolist(), strict=True):
        block = {name: values[start:end] for name, values in columns.items()}
        symbol, model = scored.groups[int(group[start])]
        cutoffs = {"all": None, "trailing_30d": int(block["as_of"].max()) - span}
        assert tuple(cutoffs) == PERFORMANCE_WINDOWS
        lag = int(block["step"].max()) - 1
        for window, cutoff in cutoffs.items():
            rows += _window_rows(block, (symbol, model, window), cutoff, periods, lag)
    return rows


def _window_rows(
    block: dict[str, np.ndarray], labels: tuple[str, str, str], cutoff: int | None, periods: int, lag: int
) -> list[dict[str, Any]]:
    """The rows of one (symbol, model, window) from the group's scored steps ``block`` (ordered by step, then
    origin): the all-steps row (its Diebold–Mariano test with ``lag`` lags), then one row per step."""
    n = len(block["step"])
    step_starts = np.flatnonzero(np.r_[True, block["step"][1:] != block["step"][:-1]])
    step_bounds = list(zip(step_starts.tolist(), np.r_[step_starts[1:], n].tolist(), strict=True))
    names = {"symbol": labels[0], "model_name": labels[1], "window_name": labels[2]}
    # the whole block (all steps), then each step's run, where the origins are in order
    member = np.ones(n, dtype=bool) if cutoff is None else block["as_of"] > cutoff
    rows = [{**names, "step": 0, **_all_steps_row(block, member, periods, lag)}]
    for lo, hi in step_bounds:
        h = int(block["step"][lo])
        if cutoff is not None:  # the window is a suffix of the run
            lo += int(np.searchsorted(block["as_of"][lo:hi], cutoff, side="right"))
        if hi > lo:
            part = {name: values[lo:hi] for name, values in block.items()}
            rows.append({**names, "step": h, **_step_row(part, h, periods)})
    return rows


_SCORED_COLUMNS = (
    "group", "step", "as_of", "direction_hit", "in_band", "in_band_raw", "crps", "crps_rw", "crps_relative",
    "pinball", "strategy_return",
)  # fmt: skip


def _step_row(part: dict[str, np.ndarray], h: int, periods: int) -> dict[str, Any]:
    """The values of one step's row from its scored steps (ordered by forecast origin)."""
    d = part["crps"] - part["crps_rw"]
    paired = d[~np.isnan(d)]
    dm_stat, dm_pvalue = diebold_mariano(paired, lag=h - 1)
    common = _common(part)
    return {
        **common,
        **_coverage_interval(common["coverage"], part["in_band"], h - 1),
        "n_predictions": len(part["step"]),
        "dm_stat": dm_stat,
        "dm_pvalue": dm_pvalue,
        **_sharpe(part["strategy_return"], periods / h),
    }


def _all_steps_row(block: dict[str, np.ndarray], member: np.ndarray, periods: int, lag: int) -> dict[str, Any]:
    """The values of the all-steps row of a (symbol, model) from its scored steps in the window (``lag``: the
    Diebold–Mariano lags, the longest horizon scored in the group minus one)."""
    part = {name: values[member] for name, values in block.items()}
    n_forecasts, per_forecast, in_band = per_forecast_series(part)
    dm_stat, dm_pvalue = diebold_mariano(per_forecast, lag=lag)
    common = _common(part)
    return {
        **common,
        **_coverage_interval(common["coverage"], in_band, lag),
        "n_predictions": n_forecasts,
        "dm_stat": dm_stat,
        "dm_pvalue": dm_pvalue,
        **_sharpe(part["strategy_return"][part["step"] == 1], periods),
    }


def _common(part: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts and means shared by step and all-steps rows."""
    crps, crps_rw = part["crps"], part["crps_rw"]
    paired = ~np.isnan(crps) & ~np.isnan(crps_rw)
    paired_rw = float(crps_rw[paired].sum())
    return {
        "n_steps": len(crps),
        "hit_rate": float(part["direction_hit"].mean()),
        "coverage": float(part["in_band"].mean()),
        "coverage_raw": float(part["in_band_raw"].mean()),
        "mean_crps": _nanmean(crps),
        "mean_crps_rw": float(crps_rw[paired].mean()) if paired.any() else math.nan,
        "crps_skill": 1 - float(crps[paired].sum()) / paired_rw if paired_rw > 0 else math.nan,
        "crps_bp": _nanmean(part["crps_relative"]) * 1e4,
        "mean_pinball": float(part["pinball"].mean()),
        "first_as_of": pg_datetime(int(part["as_of"].min())),
        "last_as_of": pg_datetime(int(part["as_of"].max())),
    }


def _coverage_interval(coverage: float, in_band: np.ndarray, lag: int) -> dict[str, float]:
    """The coverage's 90% interval from the in-band series (per step or per forecast, in origin order)."""
    values = in_band.astype(np.float64)
    low, high = coverage_interval(coverage, newey_west_mean_variance(values, lag), len(values) / (lag + 1))
    return {"coverage_low": low, "coverage_high": high}


def _sharpe(returns: np.ndarray, periods: float) -> dict[str, float]:
    """Mean strategy return and its Sharpe ratio (mean / sample std x sqrt(periods)); NaN without spread."""
    if not len(returns):
        return {"mean_strategy_return": math.nan, "sharpe": math.nan}
    mean = float(returns.mean())
    spread = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    return {"mean_strategy_return": mean, "sharpe": mean / spread * math.sqrt(periods) if spread > 0 else math.nan}


def _nanmean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else math.nan
