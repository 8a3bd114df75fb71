"""Payload builders, one module per resource: plain functions that read the store and return the JSON-ready
payload of one answer. They run in a worker thread (``reads.py`` calls them through the read policy) and know
nothing of HTTP, the cache or the event loop. Something asked for that does not exist raises
``candlecast.errors.NotFoundError`` (with what does exist, where known); the read policy caches that as a 404.

- ``fields``: conversions shared by all (timestamps to ISO strings, floats with NaN as null, forecast fields);
- ``forecasts``: the showcase and ``/api/v1/predictions`` payloads;
- ``instruments``, ``performance``, ``status`` (job runs, data freshness);
- ``pages``: the home grid and the symbol page.
"""

from typing import Any

Payload = dict[str, Any]  # JSON-ready: str keys; str, float (finite), int, bool, None, lists and dicts of them

__all__ = ["Payload"]
