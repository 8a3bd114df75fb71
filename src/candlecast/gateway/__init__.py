"""The gateway: what users touch. Public showcase route, keyed ``/api/v1`` reads, MCP tools at ``/mcp``,
web pages, ``/health`` and ``/metrics``, all served from an in-memory cache that Postgres LISTEN/NOTIFY keeps
fresh and that keeps serving (marked stale) when the database is away.

Entry points: ``create_app(settings, engine=None)`` and ``serve(settings)``.
"""

from candlecast.gateway.app import create_app, serve

__all__ = ["create_app", "serve"]
