"""The gateway's in-memory response cache.

An entry holds a read's JSON payload already serialised (``body``), its ETag and ready-made response
headers, so a cache hit costs a dict lookup and two ASGI sends. Entries expire after a TTL and are
marked invalid as soon as the database says something changed:

- ``scope`` ties an entry to the forecasts it shows: a symbol (invalidated by a NOTIFY about that
  symbol), ``ALL_SYMBOLS`` (invalidated by a NOTIFY about any symbol) or None (TTL only).
- Entries of a scope are trusted only while the LISTEN connection is up (``listening``); a
  notification missed during an outage would otherwise go unseen. A reconnect invalidates everything.

An invalid or expired entry is kept: when the database is unreachable it is still served, marked stale.
``save``/``restore`` keep entries across restarts in a JSON file: restored entries are stale from the start,
served only while the database cannot be reached, so a gateway restarted during an outage still answers.
The cache is bounded by size: past ``max_bytes`` the oldest loaded successful entries are dropped. Other answers
(cached 404s of unknown symbols) have their own budget (``error_max_bytes``, an eighth of ``max_bytes`` by default)
and only ever push out each other, so a flood of unknown symbols cannot evict a served forecast.
An entry's ``derived`` dict memoises what readers compute from its value (the path questions decode the sample
paths there once per entry), so it lives and dies with the entry.
``save`` runs in a worker thread while requests add entries: it copies the entries under ``lock`` first.
Loads race with notifications, so ``token`` is taken before a load and ``put`` stores the result as
invalid when a notification for its scope arrived in the meantime.

Which entry to serve, and when to reload it, is the read policy's business (``policy.py``); what a read's key
is, ``reads.cache_key``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ALL_SYMBOLS", "CacheEntry", "Key", "ResponseCache", "Served", "dump_json"]

ALL_SYMBOLS = "*"
ENTRY_OVERHEAD_BYTES = 1024  # what an entry costs beyond its body (key, headers, dict slot), roughly
Key = tuple[Hashable, ...]
RawHeaders = list[tuple[bytes, bytes]]


def dump_json(value: Any) -> bytes:
    """Compact JSON; NaN/Infinity are refused (payload builders turn them into null)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


@dataclass(eq=False)
class CacheEntry:
    key: Key
    status: int
    value: dict[str, Any]  # the payload as served fresh (``stale`` false where the payload has it)
    body: bytes
    etag: bytes
    expires_at: float  # monotonic clock
    scope: str | None
    cache_control: bytes
    stale_cache_control: bytes
    valid: bool = True
    headers: RawHeaders = field(default_factory=list)  # full response headers of the fresh body
    not_modified_headers: RawHeaders = field(default_factory=list)
    _stale: tuple[bytes, bytes] | None = None
    # what readers derive from ``value`` once per entry (e.g. decoded sample paths); never saved
    derived: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"etag", self.etag),
            (b"cache-control", self.cache_control),
        ]
        self.not_modified_headers = [(b"etag", self.etag), (b"cache-control", self.cache_control)]

    def stale_body(self) -> tuple[bytes, bytes]:
        """(body, etag) of the payload marked ``stale: true``; built on first use."""
        if self._stale is None:
            if "stale" in self.value:
                body = dump_json({**self.value, "stale": True})
                self._stale = (body, _etag(body))
            else:
                self._stale = (self.body, self.etag)
        return self._stale


@dataclass(frozen=True)
class Served:
    """A cached answer and whether it is served stale (the database could not confirm it)."""

    entry: CacheEntry
    stale: bool

    @property
    def status(self) -> int:
        return self.entry.status

    @property
    def body(self) -> bytes:
        return self.entry.stale_body()[0] if self.stale else self.entry.body

    @property
    def etag(self) -> bytes:
        return self.entry.stale_body()[1] if self.stale else self.entry.etag

    @property
    def cache_control(self) -> bytes:
        return self.entry.stale_cache_control if self.stale else self.entry.cache_control

    @property
    def value(self) -> dict[str, Any]:
        value = self.entry.value
        return {**value, "stale": True} if self.stale and "stale" in value else value


class ResponseCache:
    """Entries by key, with per-scope invalidation counters."""

    def __init__(
        self,
        cache_control: str,
        stale_cache_control: str,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = 256 * 2**20,
        error_max_bytes: int | None = None,
    ) -> None:
        self.entries: dict[Key, CacheEntry] = {}  # in load order: the first is the oldest
        self.max_bytes = max_bytes  # budget of the successful (200) entries
        self.error_max_bytes = max_bytes // 8 if error_max_bytes is None else error_max_bytes
        self.size_bytes = 0  # all entries
        self._error_bytes = 0  # the non-200 entries among them
        self._errors: dict[Key, None] = {}  # keys of the non-200 entries, oldest first
        self.lock = threading.Lock()  # held while the dictionaries change and while ``save`` copies them
        self.listening = False  # set by the NOTIFY listener
        self.clock = clock
        self._cache_control = cache_control.encode()
        self._stale_cache_control = stale_cache_control.encode()
        self._generation = 0  # bumped by invalidate_all
        self._versions: dict[str, int] = {}  # scope -> bumped by each notification about it

    def fresh(self, key: Key) -> CacheEntry | None:
        """The entry if it may be served without asking the database."""
        entry = self.entries.get(key)
        if entry is None or not entry.valid or self.clock() >= entry.expires_at:
            return None
        if entry.scope is not None and not self.listening:
            return None
        return entry

    def get(self, key: Key) -> CacheEntry | None:
        """The entry whatever its state (for stale serving)."""
        return self.entries.get(key)

    def token(self, scope: str | None) -> tuple[int, int]:
        return self._generation, self._versions.get(scope, 0) if scope is not None else 0

    def put(
        self,
        key: Key,
        status: int,
        value: dict[str, Any],
        ttl_s: float,
        scope: str | None,
        token: tuple[int, int],
    ) -> CacheEntry:
        body = dump_json(value)
        entry = CacheEntry(
            key=key,
            status=status,
            value=value,
            body=body,
            etag=_etag(body),
            expires_at=self.clock() + ttl_s,
            scope=scope,
            cache_control=self._cache_control,
            stale_cache_control=self._stale_cache_control,
            valid=token == self.token(scope),
        )
        with self.lock:
            self._drop(key)
            self.entries[key] = entry
            self.size_bytes += len(body) + ENTRY_OVERHEAD_BYTES
            if status == 200:
                # only successful entries are evicted for a successful one (the errors have their own budget)
                while self.size_bytes - self._error_bytes > self.max_bytes and len(self.entries) > 1:
                    oldest = next(k for k in self.entries if k not in self._errors)
                    if oldest == key:
                        break
                    self._drop(oldest)
            else:
                self._errors[key] = None
                self._error_bytes += len(body) + ENTRY_OVERHEAD_BYTES
                while self._error_bytes > self.error_max_bytes and len(self._errors) > 1:
                    self._drop(next(iter(self._errors)))
        return entry

    def _drop(self, key: Key) -> None:
        """Remove ``key``'s entry, if any (the caller holds ``lock``)."""
        previous = self.entries.pop(key, None)
        if previous is None:
            return
        cost = len(previous.body) + ENTRY_OVERHEAD_BYTES
        self.size_bytes -= cost
        if key in self._errors:
            del self._errors[key]
            self._error_bytes -= cost

    def invalidate_symbol(self, symbol: str) -> None:
        """A forecast of ``symbol`` changed: drop trust in entries showing it or showing all symbols."""
        self._versions[symbol] = self._versions.get(symbol, 0) + 1
        self._versions[ALL_SYMBOLS] = self._versions.get(ALL_SYMBOLS, 0) + 1
        for entry in self.entries.values():
            if entry.scope == symbol or entry.scope == ALL_SYMBOLS:
                entry.valid = False

    def invalidate_all(self) -> None:
        self._generation += 1
        for entry in self.entries.values():
            entry.valid = False

    def stats(self) -> dict[str, int]:
        valid = sum(1 for entry in self.entries.values() if entry.valid)
        return {"entries": len(self.entries), "valid": valid, "bytes": self.size_bytes}

    def save(self, path: Path) -> int:
        """Write the successful entries to ``path`` (atomically: a temporary file, then a rename)."""
        with self.lock:  # requests add entries meanwhile: iterate a copy
            current = list(self.entries.values())
        entries = [
            {"key": list(e.key), "status": e.status, "scope": e.scope, "value": e.value}
            for e in current
            if e.status == 200
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(dump_json({"version": 1, "entries": entries}))
        os.replace(partial, path)
        return len(entries)

    def restore(self, path: Path) -> int:
        """Load entries saved by ``save`` as stale ones (never fresh); a missing or unreadable file loads none."""
        try:
            saved = json.loads(path.read_bytes())["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        for item in saved:
            body = dump_json(item["value"])
            key = tuple(item["key"])
            with self.lock:
                self._drop(key)
                self.entries[key] = CacheEntry(
                    key=key, status=item["status"], value=item["value"], body=body, etag=_etag(body),
                    expires_at=self.clock(), scope=item["scope"], cache_control=self._cache_control,
                    stale_cache_control=self._stale_cache_control, valid=False,
                )  # fmt: skip
                self.size_bytes += len(body) + ENTRY_OVERHEAD_BYTES
        return len(saved)
