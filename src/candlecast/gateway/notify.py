"""LISTEN for new forecasts and drop the matching cache entries at once.

The ``ml_predictions`` trigger sends ``pg_notify('ml_predictions', {id, symbol, timeframe, model_name,
as_of})`` on every insert or update. One async psycopg connection per gateway process listens; when it
breaks (the database restarts or goes away) it reconnects with exponential backoff. While it is down
the cache no longer trusts its entries (a notification may be missed), and on every (re)connect it
invalidates everything, because notifications sent while nobody listened are lost for good. The idle ping has a
deadline (``connect_timeout_s``): a database that stops answering with its connections open counts as gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

__all__ = ["CHANNEL", "NotifyListener"]

CHANNEL = "ml_predictions"
log = logging.getLogger(__name__)


class NotifyListener:
    """Runs ``LISTEN ml_predictions`` until cancelled; reports notifications and connection state."""

    def __init__(
        self,
        conninfo: str,
        on_notify: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool], None],
        connect_timeout_s: float = 3.0,
        ping_s: float = 5.0,
        backoff_max_s: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.on_notify = on_notify
        self.on_state = on_state
        self.connect_timeout_s = connect_timeout_s
        self.ping_s = ping_s
        self.backoff_max_s = backoff_max_s
        self.connected = False
        self.last_error: str | None = None
        self.last_notify_at: float | None = None  # wall clock
        self.notifications = 0
        self.reconnects = 0

    async def run(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                self._set_state(False)
                raise
            except Exception as exc:  # any failure: the connection is gone, try again later
                self.last_error = f"{type(exc).__name__}: {exc}".strip()
                if self.connected:
                    log.warning("LISTEN connection lost: %s", self.last_error)
                    backoff = 0.05
                self._set_state(False)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=max(1, round(self.connect_timeout_s)),
            # notice a silently dropped peer within seconds, not hours
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=2,
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.reconnects += 1
            self.last_error = None
            self._set_state(True)
            while True:
                async for notify in conn.notifies(timeout=self.ping_s):
                    self._dispatch(notify.payload)
                await self._ping(conn)

    async def _ping(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Idle: make sure the connection is still alive. A frozen server keeps the socket open and never answers,
        so the ping has a deadline (the watchdog); past it the state turns to disconnected at once, before the
        driver's own cancellation (which waits on the server too) runs its course in the background."""
        ping = asyncio.ensure_future(conn.execute("SELECT 1"))
        done, _ = await asyncio.wait({ping}, timeout=self.connect_timeout_s)
        if done:
            ping.result()
            return
        log.warning("LISTEN connection: no answer to a ping within %g s; reconnecting", self.connect_timeout_s)
        self._set_state(False)
        ping.cancel()
        ping.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved: nothing to log
        raise TimeoutError("no answer to a ping on the LISTEN connection")

    def _dispatch(self, payload: str) -> None:
        self.notifications += 1
        self.last_notify_at = time.time()
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed %s notification: %.200r", CHANNEL, payload)
            return
        if isinstance(message, dict):
            self.on_notify(message)

    def _set_state(self, connected: bool) -> None:
        changed = connected != self.connected
        self.connected = connected
        if changed or connected:
            self.on_state(connected)
