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
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from candlecast.errors import InputError, OverloadedError
from candlecast.inference.metrics import ServiceMetrics
from candlecast.models.base import Forecast, Forecaster, SeriesInput

__all__ = ["ModelBatcher"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    series: list[SeriesInput]
    seeds: list[int | None]
    pred_len: int
    sample_count: int
    levels: tuple[float, ...]
    future: asyncio.Future[list[Forecast]]


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

    def submit(
        self,
        series: list[SeriesInput],
        *,
        pred_len: int,
        sample_count: int,
        levels: tuple[float, ...],
        seeds: list[int | None],
    ) -> asyncio.Future[list[Forecast]]:
        """Queue one request's series; the future resolves to one Forecast per series (or the error)."""
        if self._queued_series + len(series) > self.max_queued_series:
            raise OverloadedError(f"{self._queued_series} series already queued for model {self.forecaster.name!r}")
        future: asyncio.Future[list[Forecast]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(series, seeds, pred_len, sample_count, levels, future))
        self._set_queued(self._queued_series + len(series))
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
            groups: dict[tuple[int, int], list[_Job]] = {}
            for job in live:
                groups.setdefault((job.pred_len, job.sample_count), []).append(job)
            for jobs in groups.values():
                await self._run(jobs)

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

    async def _run(self, jobs: list[_Job]) -> None:
        """One model call for ``jobs`` (same pred_len and sample_count); results go to their futures."""
        series = [s for job in jobs for s in job.series]
        seeds = [sd for job in jobs for sd in job.seeds]
        levels = tuple(sorted({q for job in jobs for q in job.levels}))
        name = self.forecaster.name
        self.metrics.batch_series.labels(name).observe(len(series))
        self.metrics.batch_requests.labels(name).observe(len(jobs))
        call = partial(self.forecaster.forecast, series, jobs[0].pred_len, jobs[0].sample_count, levels, seeds)
        started = time.perf_counter()
        try:
            forecasts = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except InputError as exc:
            if len(jobs) > 1:  # find the culprit: run the jobs one by one, so each gets its own answer
                for job in jobs:
                    await self._run([job])
                return
            _fail(jobs, exc)
            return
        except Exception as exc:  # a model failure fails this call's requests, never the worker
            log.exception("model %s failed on %d series", name, len(series))
            _fail(jobs, exc)
            return
        finally:
            self.metrics.model_seconds.labels(name).observe(time.perf_counter() - started)
        offset = 0
        for job in jobs:
            part = forecasts[offset : offset + len(job.series)]
            offset += len(job.series)
            if not job.future.done():
                job.future.set_result(part)


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
