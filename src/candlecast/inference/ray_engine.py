"""The inference service on Ray Serve: the same app and model registry, replicated, batched by ``@serve.batch``.

``candlecast serve-inference --engine ray --replicas N`` (extra ``ray``; ``docs/scale.md``).

One deployment, ``InferenceReplica``: each replica loads the model registry once and serves the very app of the
plain engine (``app.create_app``: routes, schemas and validation, the one ``CandlecastError`` handler, the token
and body-limit guard, metrics) through Serve's FastAPI ingress, so the HTTP API and its JSON bodies are the same
and ``InferenceClient`` needs only the URL. Only the engine differs: instead of ``batching.ModelBatcher``'s queue,
each loaded model gets a Ray Serve ``@serve.batch`` queue (``ServeBatchEngine``) that merges concurrent requests
up to ``max_batch_series`` series within ``batch_window_ms``; the merged jobs run through ``batching.run_group``,
as in the plain engine, so the answers for the same seeds are the same (each series is seeded alone).

Ray's HTTP proxy listens on ``inference.host:port`` and spreads requests over the replicas. Each replica reserves
``ray_replica_cpus`` CPUs and ``ray_replica_gpus`` GPUs (``ray_actor_options``): ``ray_replica_gpus = 1`` is one
replica per GPU, ``ray_replica_cpus = k`` one replica per group of k cores (its torch threads default to k). With
``ray_max_replicas`` set, Serve autoscales between ``ray_replicas`` and it.

Differences from the plain engine: ``/metrics`` is the answering replica's own (Ray exports cluster metrics);
the overload bound (``max_queued_series``, 503) counts a replica's series in flight, waiting or running; requests
beyond ``ray_max_ongoing_requests`` per replica wait in Ray's router.

Importing this module imports ``ray``; ``candlecast.inference.app`` never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve as ray_serve

import candlecast
from candlecast.config import InferenceSettings, Settings, get_settings, is_loopback
from candlecast.errors import OverloadedError
from candlecast.inference.app import check_exposure, create_app
from candlecast.inference.batching import Job, Outcome, group_jobs, run_group
from candlecast.inference.metrics import ServiceMetrics
from candlecast.models.base import Forecast, Forecaster
from candlecast.models.registry import Registry

__all__ = ["APP_NAME", "InferenceReplica", "ServeBatchEngine", "application", "deploy", "local_runtime_env", "serve"]

log = logging.getLogger("candlecast.inference")

APP_NAME = "candlecast-inference"

BatchQueue = Callable[[Job], Awaitable[Outcome]]


class ServeBatchEngine:
    """The engine of one replica: a ``@serve.batch`` queue and a thread pool per loaded model."""

    def __init__(self, cfg: InferenceSettings) -> None:
        self.cfg = cfg
        self._queues: dict[str, BatchQueue] = {}
        self._executors: list[ThreadPoolExecutor] = []
        self._in_flight: dict[str, int] = {}
        self._metrics = ServiceMetrics()

    async def start(self, registry: Registry, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        for entry in registry.entries():
            if entry.forecaster is None:
                continue
            executor = ThreadPoolExecutor(self.cfg.workers_per_model, thread_name_prefix=f"model-{entry.name}")
            self._executors.append(executor)
            batched = ray_serve.batch(
                max_batch_size=self.cfg.max_batch_series,
                batch_wait_timeout_s=self.cfg.batch_window_ms / 1000.0,
                max_concurrent_batches=self.cfg.workers_per_model,
                batch_size_fn=_series_in,  # a batch is bounded in series, as in the plain engine
            )(_batch_runner(entry.forecaster, executor, metrics))
            self._queues[entry.name] = batched
            self._in_flight[entry.name] = 0

    def submit(self, model: str, job: Job) -> asyncio.Future[list[Forecast]]:
        in_flight, n = self._in_flight[model], len(job.series)
        if in_flight + n > self.cfg.max_queued_series:
            raise OverloadedError(f"{in_flight} series already in flight for model {model!r} on this replica")
        self._set_in_flight(model, in_flight + n)
        task = asyncio.ensure_future(self._call(model, job))
        task.add_done_callback(lambda _: self._set_in_flight(model, self._in_flight[model] - n))
        return task  # cancelling it cancels the queued request, which @serve.batch then skips

    async def stop(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()
        self._queues.clear()

    async def _call(self, model: str, job: Job) -> list[Forecast]:
        outcome = await self._queues[model](job)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _set_in_flight(self, model: str, n: int) -> None:
        self._in_flight[model] = n
        self._metrics.queue_depth.labels(model).set(n)


def _series_in(jobs: list[Job]) -> int:
    return sum(len(job.series) for job in jobs)


def _batch_runner(
    forecaster: Forecaster, executor: ThreadPoolExecutor, metrics: ServiceMetrics
) -> Callable[[list[Job]], Awaitable[list[Outcome]]]:
    """The function ``@serve.batch`` calls with the merged jobs: one model call per (pred_len, sample_count)
    group, one outcome (forecasts or error) per job, in order."""

    async def run(jobs: list[Job]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        for group in group_jobs(jobs):
            for job, outcome in zip(group, await run_group(forecaster, group, executor, metrics), strict=True):
                outcomes[id(job)] = outcome
        return [outcomes[id(job)] for job in jobs]

    return run


@ray_serve.deployment(name="InferenceReplica")
@ray_serve.ingress()
class InferenceReplica:
    """One replica: the registry loaded once, the plain engine's app, requests batched by ``@serve.batch``."""

    def __init__(self, settings: Settings) -> None:
        cfg = settings.inference
        if cfg.torch_threads is None:  # a CPU group's torch uses its own cores, not every core of the node
            threads = max(1, int(cfg.ray_replica_cpus))
            settings = settings.model_copy(update={"inference": cfg.model_copy(update={"torch_threads": threads})})
        self.settings = settings
        if not logging.getLogger().handlers:  # a Ray worker: the request log lines go to the replica's log file
            logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings, engine=ServeBatchEngine(self.settings.inference))


def application(settings: Settings, replicas: int | None = None) -> Any:
    """The Serve application of ``settings`` (``replicas`` overrides ``inference.ray_replicas``)."""
    cfg = settings.inference
    actor: dict[str, Any] = {"num_cpus": cfg.ray_replica_cpus}
    if cfg.ray_replica_gpus:
        actor["num_gpus"] = cfg.ray_replica_gpus
    count = replicas or cfg.ray_replicas
    scaling: dict[str, Any] = {"num_replicas": count}
    if cfg.ray_max_replicas is not None and cfg.ray_max_replicas > count:
        scaling = {
            "autoscaling_config": {
                "min_replicas": count,
                "max_replicas": cfg.ray_max_replicas,
                "target_ongoing_requests": cfg.ray_target_ongoing_requests,
            }
        }
    deployment: Any = InferenceReplica  # a Serve Deployment (mypy does not apply class decorators)
    return deployment.options(
        ray_actor_options=actor, max_ongoing_requests=cfg.ray_max_ongoing_requests, **scaling
    ).bind(settings)


def deploy(settings: Settings, replicas: int | None = None) -> str:
    """Start Serve's HTTP proxy on ``inference.host:port`` in the connected Ray cluster and deploy the service;
    returns once every replica has loaded its models, with the service's base URL."""
    cfg = settings.inference
    ray_serve.start(http_options={"host": cfg.host, "port": cfg.port})
    ray_serve.run(application(settings, replicas), name=APP_NAME, route_prefix="/", blocking=False)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    return f"http://{host}:{cfg.port}"


def local_runtime_env() -> dict[str, Any]:
    """Ray workers of a local cluster import this very ``candlecast`` (a checkout or an install)."""
    source = str(Path(candlecast.__file__).resolve().parents[1])
    paths = [source, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def serve(settings: Settings | None = None, replicas: int | None = None) -> None:
    """Run the service on Ray Serve until interrupted: in the cluster at ``inference.ray_address``, else in a
    local Ray instance (bound to 127.0.0.1 when the service is)."""
    settings = settings or get_settings()
    cfg = settings.inference
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    check_exposure(settings)
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, log_to_driver=False)
    else:
        local: dict[str, Any] = {"_node_ip_address": "127.0.0.1"} if is_loopback(cfg.host) else {}
        ray.init(address="local", include_dashboard=False, runtime_env=local_runtime_env(), log_to_driver=False,
                 **local)  # fmt: skip
    # Ray's core worker installs its own SIGTERM handler; stop as on Ctrl-C instead, shutting Serve down.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        url = deploy(settings, replicas)
        log.info("inference service on Ray Serve at %s (%s replica(s))", url, replicas or cfg.ray_replicas)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()
        ray.shutdown()
