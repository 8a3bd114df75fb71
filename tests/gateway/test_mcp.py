"""The MCP tools at /mcp, called through the official MCP SDK client over streamable HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp import Client
from sqlalchemy.engine import Engine

from candlecast.store.performance import performance


def call_tools(url: str) -> dict[str, Any]:
    async def session() -> dict[str, Any]:
        async with Client(url) as client:
            tools = await client.list_tools()
            return {
                "tools": {tool.name: tool for tool in tools.tools},
                "forecast": await client.call_tool("get_forecast", {"symbol": "BTCUSDT"}),
                "daily": await client.call_tool("get_forecast", {"symbol": "SPY", "timeframe": "1d"}),
                "unknown": await client.call_tool("get_forecast", {"symbol": "NOPE"}),
                "malformed": await client.call_tool("get_forecast", {"symbol": "BTC", "timeframe": "5m"}),
                "instruments": await client.call_tool("list_instruments", {}),
                "performance": await client.call_tool("get_performance", {"symbol": "SPY", "model_name": "baseline"}),
            }

    return asyncio.run(session())


def test_mcp_tools_answer_from_the_same_cache_as_the_showcase(gateway: Any, store: Engine) -> None:
    showcase = gateway.get("/showcase/ml-prediction/BTCUSDT").json()
    results = call_tools(f"{gateway.url}/mcp")

    tools = results["tools"]
    assert set(tools) == {"get_forecast", "list_instruments", "get_performance"}
    assert set(tools["get_forecast"].input_schema["properties"]) == {"symbol", "model_name", "timeframe"}
    assert tools["get_forecast"].input_schema["required"] == ["symbol"]

    assert results["forecast"].is_error is False
    assert results["forecast"].structured_content == showcase
    daily = results["daily"].structured_content
    assert (daily["symbol"], daily["timeframe"], daily["stale"]) == ("SPY", "1d", False)

    assert results["unknown"].is_error is True
    assert "unknown symbol 'NOPE'" in results["unknown"].content[0].text
    assert results["malformed"].is_error is True
    assert "timeframe: must be one of" in results["malformed"].content[0].text

    symbols = {row["symbol"] for row in results["instruments"].structured_content["instruments"]}
    assert symbols == {"BTCUSDT", "SPY", "EURUSD"}
    rows = results["performance"].structured_content["rows"]
    [expected] = performance(store, symbol="SPY", model_name="baseline")
    assert [(r["symbol"], r["model_name"], r["coverage"]) for r in rows] == [("SPY", "baseline", expected.coverage)]

    metrics = gateway.get("/metrics").text
    assert 'candlecast_gateway_cache_total{result="hit"}' in metrics
    hits = next(
        line for line in metrics.splitlines() if line.startswith('candlecast_gateway_cache_total{result="hit"}')
    )
    assert float(hits.split()[-1]) == 1.0  # get_forecast BTCUSDT: the entry the showcase request loaded
