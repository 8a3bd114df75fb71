"""The read policy: when a read is answered from the cache, when from the database, and what happens when the
database is away. Every read the gateway serves (showcase, API, MCP tools, pages) goes through ``ReadPolicy.read``
with its cache key and a loader (a payload builder bound to its parameters, run in a worker thread).

The rules, in order:

1. a fresh entry is served as is;
2. when the database is believed unreachable (a read failed in the last ``db_retry_s``, or the LISTEN
   connection is down) an existing entry is served at once with ``stale: true`` and refreshed in the
   background;
3. otherwise the entry is loaded (one load per key at a time; concurrent readers share it). A loader's
   ``NotFoundError`` is an answer like any other, cached as a 404. When the load fails, an existing entry
   is served stale; with nothing cached the caller gets ``DatabaseUnavailable`` (HTTP 503).

So a symbol served once keeps being served while the database is away, and a new forecast is served as
soon as its NOTIFY arrives (``notify.py``; rule 1 stops applying to the entry, rule 3 loads the new row).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from candlecast.config import GatewaySettings
from candlecast.errors import DatabaseUnavailable, NotFoundError
from candlecast.gateway.cache import Key, ResponseCache, Served
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.notify import NotifyListener
from candlecast.gateway.payloads import Payload
from candlecast.gateway.responses import error_payload

__all__ = ["DB_ERRORS", "Loader", "ReadPolicy", "public_error"]

log = logging.getLogger(__name__)

# Failures that mean "the database is not reachable" (as opposed to a bug in a query).
DB_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
)
Loader = Callable[[], Payload]


class ReadPolicy:
    """The response cache, what the gateway believes about the database, and the rules above."""

    def __init__(
        self, gw: GatewaySettings, engine: Engine, metrics: GatewayMetrics, listen_url: str | None = None
    ) -> None:
        self.gw = gw
        self.engine = engine
        self.metrics = metrics
        cache_control = (
            f"public, max-age={gw.http_max_age_s}, stale-while-revalidate={gw.http_stale_while_revalidate_s}, "
            f"stale-if-error={gw.http_stale_if_error_s}"
        )
        self.cache = ResponseCache(
            cache_control,
            f"public, max-age=0, stale-if-error={gw.http_stale_if_error_s}",
            max_bytes=gw.cache_max_mb * 2**20,
        )
        self.listener = NotifyListener(
            # LISTEN where the inserts NOTIFY: the primary (``listen_url``), also when reads go to a replica
            make_url(listen_url or engine.url).set(drivername="postgresql").render_as_string(hide_password=False),
            on_notify=self._on_notify,
            on_state=self._on_listener_state,
            connect_timeout_s=gw.db_timeout_s,
            ping_s=gw.notify_ping_s,
            backoff_max_s=gw.notify_backoff_max_s,
        )
        self.listening = asyncio.Event()
        self.db_error: str | None = None
        self._retry_at = 0.0  # monotonic; before it, reads do not try the database
        self._inflight: dict[Key, asyncio.Task[Served]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._listener_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        metrics.cache_entries.set_function(lambda: len(self.cache.entries))

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening; wait (up to the DB timeout) for LISTEN so the first reads can be trusted."""
        snapshot = self.gw.cache_snapshot_path
        if snapshot is not None:
            if snapshot.exists():  # the first start has none yet: nothing to say
                restored = self.cache.restore(snapshot)
                log.info(
                    "restored %d cached responses from %s (stale until the database confirms them)", restored, snapshot
                )
            self._snapshot_task = asyncio.create_task(self._save_periodically(snapshot), name="candlecast-snapshot")
        self._listener_task = asyncio.create_task(self.listener.run(), name="candlecast-listen")
        try:
            await asyncio.wait_for(self.listening.wait(), timeout=self.gw.db_timeout_s)
        except TimeoutError:
            log.warning("database not reachable at start; serving nothing until it is (%s)", self.listener.last_error)

    async def _save_periodically(self, path: Path) -> None:
        """Save the cache every interval; a failed save is logged and the next one tried (the task never ends)."""
        while True:
            await asyncio.sleep(self.gw.cache_snapshot_interval_s)
            try:
                await anyio.to_thread.run_sync(self.cache.save, path)
            except Exception:
                self.metrics.snapshot_failures.inc()
                log.exception("saving the cache snapshot to %s failed; trying again in %g s", path,
                              self.gw.cache_snapshot_interval_s)  # fmt: skip

    async def stop(self) -> None:
        tasks = [t for t in (self._listener_task, self._snapshot_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.gw.cache_snapshot_path is not None:
            try:
                self.cache.save(self.gw.cache_snapshot_path)
            except OSError:
                log.exception("saving the cache snapshot to %s at shutdown failed", self.gw.cache_snapshot_path)
        await anyio.to_thread.run_sync(self.engine.dispose)

    def _on_notify(self, message: dict[str, Any]) -> None:
        self.metrics.notifications.inc()
        symbol = message.get("symbol")
        if isinstance(symbol, str):
            self.cache.invalidate_symbol(symbol)
        else:
            self.cache.invalidate_all()

    def _on_listener_state(self, connected: bool) -> None:
        self.cache.listening = connected
        self.metrics.listening.set(1 if connected else 0)
        if connected:
            self.cache.invalidate_all()  # whatever changed while nobody listened
            self.listening.set()
        else:
            self.listening.clear()

    # -- the rules ----------------------------------------------------------------------------------

    def _db_suspect(self, scope: str | None) -> bool:
        return time.monotonic() < self._retry_at or (scope is not None and not self.cache.listening)

    async def read(self, key: Key, loader: Loader, scope: str | None, ttl_s: float) -> Served:
        """The answer for ``key``: cached, or loaded with ``loader``. ``scope`` is the symbol the answer shows
        (``ALL_SYMBOLS`` for every symbol, None when no NOTIFY concerns it: then only ``ttl_s`` expires it)."""
        entry = self.cache.fresh(key)
        if entry is not None:
            self.metrics.cache_hit.inc()
            return Served(entry, False)
        existing = self.cache.get(key)
        if existing is not None and self._db_suspect(scope):
            if time.monotonic() >= self._retry_at and key not in self._inflight:
                task = asyncio.create_task(self._load_shared(key, loader, scope, ttl_s))
                self._background.add(task)
                task.add_done_callback(self._background_done)
            self.metrics.cache_stale.inc()
            return Served(existing, True)
        try:
            return await self._load_shared(key, loader, scope, ttl_s)
        except Exception as exc:
            existing = self.cache.get(key)
            if existing is None:
                if isinstance(exc, DB_ERRORS):
                    # the cause (host, port, driver text) goes to the log, never to the client
                    raise DatabaseUnavailable("database unreachable and nothing cached yet; try again shortly") from exc
                raise
            if not isinstance(exc, DB_ERRORS):
                log.exception("loading %r failed; serving the cached entry", key)
            self.metrics.cache_stale.inc()
            return Served(existing, True)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background refresh failed: %s", task.exception())

    async def _load_shared(self, key: Key, loader: Loader, scope: str | None, ttl_s: float) -> Served:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, loader, scope, ttl_s))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, key: Key, loader: Loader, scope: str | None, ttl_s: float) -> Served:
        token = self.cache.token(scope)
        try:
            status, value = 200, await self._bounded(loader)
        except NotFoundError as exc:  # the database answered: there is no such thing
            status, value = 404, error_payload(exc)
        except DB_ERRORS as exc:
            if self.db_error is None:
                log.warning("database read failed; serving cached answers stale: %s: %s", type(exc).__name__, exc)
            self.db_error = f"{type(exc).__name__}: {exc}".strip()[:500]
            self._retry_at = time.monotonic() + self.gw.db_retry_s
            self.metrics.db_up.set(0)
            raise
        self.db_error = None
        self._retry_at = 0.0
        self.metrics.db_up.set(1)
        self.metrics.cache_miss.inc()
        return Served(self.cache.put(key, status, value, ttl_s, scope, token), False)

    async def _bounded(self, work: Callable[[], Any]) -> Any:
        """``work`` in a worker thread, given up after ``db_read_bound_s`` with ``TimeoutError`` (an ``OSError``,
        so a database error): a database that stops answering (frozen, connections open) ignores its own
        statement timeout, and an abandoned thread (at most one per pooled connection) ends when it answers."""
        with anyio.fail_after(self.gw.db_read_bound_s):
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)

    async def ping_bounded(self) -> tuple[bool, str | None]:
        """``ping`` within ``db_read_bound_s``."""
        try:
            return await self._bounded(self.ping)
        except TimeoutError:
            log.info("database ping got no answer within %g s", self.gw.db_read_bound_s)
            return False, "TimeoutError"

    def ping(self) -> tuple[bool, str | None]:
        """(database answers, the error when it does not); blocking: run it in a worker thread."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DB_ERRORS as exc:
            log.info("database ping failed: %s: %s", type(exc).__name__, exc)
            return False, public_error(type(exc).__name__)
        return True, None


def public_error(error: str | None) -> str | None:
    """What a client may see of a database error: its class name only (no host, port or driver links)."""
    return None if error is None else error.split(":", 1)[0].strip()
