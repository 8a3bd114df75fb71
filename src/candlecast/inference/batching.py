"""Micro-batching: requests for one model wait a few milliseconds in a queue and run as one model call.

Each model gets a ``ModelBatcher``: ``submit`` puts a job (a request's series) in the queue and returns a
future. A worker task takes the first waiting job, keeps collecting jobs for ``window_s`` (or until
``max_batch_series`` series are gathered), and runs each group of jobs that share ``pred_len`` and
``sample_count`` as one ``Forecaster.forecast`` call in a thread (model calls block). Results are split
back to the jobs' futures.

Why results do not depend on batching: every series carries its own seed (derived from its request's seed
and its index in that request), and the models seed each series alone. Quantile levels are merged across a
group and each job reads back its own levels.

A job whose future is already done when its batch starts (the client left, or the request timed out) is
skipped, so nothing waits for a client that is gone. No lock spans models: each model has its own worker(s)
and thread pool.

``run_group`` (one model call for jobs that share ``pred_len`` and ``sample_count``, each job getting its own
forecasts or its own error) is shared with the Ray Serve engine (``ray_engine.py``), whose queue is
``@serve.batch`` instead of this one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from candlecast.config import InferenceSettings
from candlecast.errors import InputError, OverloadedError
from candlecast.inference.metrics import ServiceMetrics
from candlecast.models.base import Forecast, Forecaster, SeriesInput
from candlecast.models.registry import Registry

__all__ = ["Job", "ModelBatcher", "QueueEngine", "group_jobs", "run_group"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request's series, as the service submits them to an engine (``app.Engine.submit``) and a model call
    takes them (``run_group``): validated inputs, one seed per series, and the shape of the answer."""

    series: list[SeriesInput]
    seeds: list[int | None]
    pred_len: int
    sample_count: int
    levels: tuple[float, ...]


@dataclass(eq=False)
class _Job(Job):
    future: asyncio.Future[list[Forecast]] = field(kw_only=True)


Outcome = list[Forecast] | BaseException  # a job's forecasts, or the error that failed it
J = TypeVar("J", bound=Job)


class ModelBatcher:
    """The queue and worker(s) of one model."""

    def __init__(
        self,
        forecaster: Forecaster,
        *,
        window_s: float,
        max_batch_series: int,
        max_queued_series: int,
        workers: int = 1,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.forecaster = forecaster
        self.window_s = window_s
        self.max_batch_series = max_batch_series
        self.max_queued_series = max_queued_series
        self.workers = workers
        self.metrics = metrics or ServiceMetrics()
        self._pending: collections.deque[_Job] = collections.deque()
        self._queued_series = 0
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker task(s); call from the running event loop."""
        name = self.forecaster.name
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=f"model-{name}")
        self._tasks = [asyncio.create_task(self._work(), name=f"batcher-{name}-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the inference service is shutting down"))
        self._set_queued(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, job: Job) -> asyncio.Future[list[Forecast]]:
        """Queue one request's series; the future resolves to one Forecast per series (or the error)."""
        if self._queued_series + len(job.series) > self.max_queued_series:
            raise OverloadedError(f"{self._queued_series} series already queued for model {self.forecaster.name!r}")
        future: asyncio.Future[list[Forecast]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(**vars(job), future=future))
        self._set_queued(self._queued_series + len(job.series))
        self._wakeup.set()
        return future

    def _set_queued(self, n: int) -> None:
        self._queued_series = n
        self.metrics.queue_depth.labels(self.forecaster.name).set(n)

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            live = [job for job in batch if not job.future.done()]
            if dropped := len(batch) - len(live):
                self.metrics.dropped.labels(self.forecaster.name).inc(dropped)
            for jobs in group_jobs(live):
                outcomes = await run_group(self.forecaster, jobs, self._executor, self.metrics)
                for job, outcome in zip(jobs, outcomes, strict=True):
                    _deliver(job.future, outcome)

    async def _collect(self) -> list[_Job]:
        """The next batch: the first waiting job plus those arriving within the window, up to the bound."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        first = self._pending.popleft()
        batch, n = [first], len(first.series)
        deadline = time.monotonic() + self.window_s
        while n < self.max_batch_series:
            if not self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                continue
            if n + len(self._pending[0].series) > self.max_batch_series:
                break
            job = self._pending.popleft()
            batch.append(job)
            n += len(job.series)
        self._set_queued(max(0, self._queued_series - n))
        return batch


class QueueEngine:
    """The plain engine: one ``ModelBatcher`` (queue and workers) per loaded model, in the service's process."""

    def __init__(self, cfg: InferenceSettings) -> None:
        self.cfg = cfg
        self.batchers: dict[str, ModelBatcher] = {}

    async def start(self, registry: Registry, metrics: ServiceMetrics) -> None:
        for entry in registry.entries():
            if entry.forecaster is not None:
                batcher = ModelBatcher(
                    entry.forecaster,
                    window_s=self.cfg.batch_window_ms / 1000.0,
                    max_batch_series=self.cfg.max_batch_series,
                    max_queued_series=self.cfg.max_queued_series,
                    workers=self.cfg.workers_per_model,
                    metrics=metrics,
                )
                batcher.start()
                self.batchers[entry.name] = batcher

    def submit(self, model: str, job: Job) -> asyncio.Future[list[Forecast]]:
        return self.batchers[model].submit(job)

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()
        self.batchers.clear()


def group_jobs(jobs: list[J]) -> list[list[J]]:
    """``jobs`` grouped by (pred_len, sample_count), in order of first appearance: one model call per group."""
    groups: dict[tuple[int, int], list[J]] = {}
    for job in jobs:
        groups.setdefault((job.pred_len, job.sample_count), []).append(job)
    return list(groups.values())


async def run_group(
    forecaster: Forecaster, jobs: Sequence[Job], executor: Executor | None, metrics: ServiceMetrics
) -> list[Outcome]:
    """One model call (in ``executor``) for ``jobs``, which share pred_len and sample_count; one outcome per job.

    If the call fails on bad input and several jobs took part, the jobs are run one by one, so that only the
    culprit gets the error. Any other failure fails every job of the call, never the caller.
    """
    series = [s for job in jobs for s in job.series]
    seeds = [sd for job in jobs for sd in job.seeds]
    levels = tuple(sorted({q for job in jobs for q in job.levels}))
    name = forecaster.name
    metrics.batch_series.labels(name).observe(len(series))
    metrics.batch_requests.labels(name).observe(len(jobs))
    call = partial(forecaster.forecast, series, jobs[0].pred_len, jobs[0].sample_count, levels, seeds)
    started = time.perf_counter()
    try:
        forecasts = await asyncio.get_running_loop().run_in_executor(executor, call)
    except InputError as exc:
        if len(jobs) > 1:  # find the culprit: run the jobs one by one, so each gets its own answer
            return [(await run_group(forecaster, [job], executor, metrics))[0] for job in jobs]
        return [exc]
    except Exception as exc:  # a model failure fails this call's requests, never the worker
        log.exception("model %s failed on %d series", name, len(series))
        return [exc] * len(jobs)
    finally:
        metrics.model_seconds.labels(name).observe(time.perf_counter() - started)
    outcomes: list[Outcome] = []
    offset = 0
    for job in jobs:
        outcomes.append(forecasts[offset : offset + len(job.series)])
        offset += len(job.series)
    return outcomes


def _deliver(future: asyncio.Future[list[Forecast]], outcome: Outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
