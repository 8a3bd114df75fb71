"""The gateway: what users touch. Public showcase route, keyed ``/api/v1`` reads, MCP tools at ``/mcp``,
web pages, ``/health`` and ``/metrics``, all served from an in-memory cache that Postgres LISTEN/NOTIFY keeps
fresh and that keeps serving (marked stale) when the database is away. It reads the store and never loads a
model: it imports none of the models, inference or jobs packages.

Entry points: ``create_app(settings, engine=None)`` and ``serve(settings)`` (``app.py``).

A read, end to end: a route (``routes/``, ``pages/``, ``mcp_tools.py``) asks ``GatewayData`` (``reads.py``),
which parses the request (``params.py``), builds the cache key (``reads.cache_key``) and reads through the
policy (``policy.py``: cache in ``cache.py``, NOTIFY in ``notify.py``, outage rules) with a payload builder
(``payloads/``). Errors are ``candlecast.errors`` exceptions, answered in one place (``responses.py``).
"""

from candlecast.gateway.app import create_app, serve

__all__ = ["create_app", "serve"]
