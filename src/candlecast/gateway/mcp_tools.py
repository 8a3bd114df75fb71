"""MCP tools for AI agents, on the official MCP Python SDK (streamable HTTP, mounted at ``/mcp``).

The tools read through the gateway's cache (``GatewayData``, as the routes do), so an agent gets the stored
forecast in milliseconds, never a live model run. Errors (``candlecast.errors``: a malformed value, an unknown
symbol, the database away with nothing cached) come back as tool errors with the same detail an HTTP client
gets (``responses.error_detail``). The ``/mcp`` route is guarded like ``/api/v1``: a per-address rate limit,
and the API key when ``mcp_requires_key`` is set; a refusal is answered by ``responses.error_response``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.routing import Route

from candlecast.errors import CandlecastError
from candlecast.gateway.cache import Served
from candlecast.gateway.reads import GatewayData
from candlecast.gateway.responses import error_detail, error_response
from candlecast.gateway.security import ApiKeys, RateLimiter

__all__ = ["build_mcp", "mcp_route"]

INSTRUCTIONS = (
    "candlecast serves stored probabilistic forecasts of market candles (p10/p50/p90 per future timestamp) "
    "made by scheduled batch jobs. Call list_instruments to see symbols and which (model, timeframe) "
    "forecasts exist, get_forecast for the newest forecast, get_performance for how past forecasts scored."
)


async def _value(read: Awaitable[Served]) -> dict[str, Any]:
    try:
        served = await read
    except CandlecastError as exc:
        raise ToolError(error_detail(exc)) from exc
    if served.status != 200:
        raise ToolError(served.value.get("detail", f"HTTP {served.status}"))
    return served.value


def build_mcp(data: GatewayData) -> MCPServer:
    server: MCPServer = MCPServer("candlecast", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    async def get_forecast(symbol: str, model_name: str | None = None, timeframe: str | None = None) -> dict[str, Any]:
        """The newest stored forecast of `symbol`: generated_at, as_of, target_timestamps and p10/p50/p90
        closes per target, last_close, and `stale` (true when the database could not confirm it is the newest).
        `timeframe` is 1h or 1d; both default to the gateway's defaults."""
        return await _value(data.showcase(symbol, model_name, timeframe))

    @server.tool()
    async def list_instruments() -> dict[str, Any]:
        """Every instrument (symbol, asset class, candle ranges) and the (model, timeframe) forecasts it has."""
        return await _value(data.instruments())

    @server.tool()
    async def get_performance(symbol: str | None = None, model_name: str | None = None) -> dict[str, Any]:
        """How past forecasts scored, per (symbol, timeframe, model): hit rate, p10-p90 coverage against the
        nominal 0.8, mean CRPS, Sharpe; plus calibration (share of realised closes below p10/p50/p90)."""
        return await _value(data.performance(symbol, model_name))

    return server


class _Guard:
    """Per-address rate limit, and the API key when ``mcp_requires_key`` is set, in front of the MCP app."""

    def __init__(self, app: Any, limiter: RateLimiter, keys: ApiKeys | None) -> None:
        self.app = app
        self.limiter = limiter
        self.keys = keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client")
        denied = self.limiter.take("addr:" + (client[0] if client else "unknown"))
        if denied is None and self.keys is not None:
            presented = dict(scope["headers"]).get(b"x-api-key")
            denied = self.keys.check(presented.decode("latin-1") if presented else None)
            if denied is None and presented:
                denied = self.limiter.take("key:" + hashlib.sha256(presented).hexdigest()[:24])
        if denied is None:
            await self.app(scope, receive, send)
            return
        await error_response(denied)(scope, receive, send)


def mcp_route(server: MCPServer, host: str, limiter: RateLimiter, keys: ApiKeys | None) -> Route:
    """The ``/mcp`` route (stateless streamable HTTP, JSON responses); run ``server.session_manager.run()``
    in the app's lifespan."""
    # Bound to a loopback address, the SDK accepts only loopback Host/Origin headers (DNS-rebinding
    # protection); bound elsewhere, the gateway is meant to be reached by other names and checks none.
    app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host)
    inner = next(r for r in app.routes if isinstance(r, Route) and r.path == "/mcp")
    return Route("/mcp", endpoint=_Guard(inner.endpoint, limiter, keys))
