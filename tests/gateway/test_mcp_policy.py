"""One key policy for MCP and /api/v1, and bounded GET /mcp event streams, against a real gateway server.

With keys configured, the MCP tools that read what /api/v1 serves only with a key (list_instruments,
get_performance, ask_paths) need the key too; get_forecast, the showcase's data, stays public on both."""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

import httpx
from tests.gateway import support

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def call(url: str, tool: str, arguments: dict[str, Any], key: str | None = None) -> httpx.Response:
    """One stateless JSON-RPC tools/call over plain HTTP."""
    headers = dict(HEADERS, **({"x-api-key": key} if key else {}))
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return httpx.post(f"{url}/mcp", json=body, headers=headers, timeout=10)


def tool_result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return dict(response.json()["result"])


def test_mcp_keyed_tools_need_the_key_that_api_v1_needs(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url)  # keys configured
    with support.GatewayServer(settings) as gw:
        assert gw.get("/api/v1/instruments").status_code == 401
        assert gw.get("/showcase/ml-prediction/BTCUSDT").status_code == 200

        forecast = tool_result(call(gw.url, "get_forecast", {"symbol": "BTCUSDT"}))
        assert forecast["isError"] is False  # the showcase's data: public on both
        for tool, args in (
            ("list_instruments", {}),
            ("get_performance", {"symbol": "SPY"}),
            ("ask_paths", {"symbol": "BTCUSDT", "question": "drawdown"}),
        ):
            refused = tool_result(call(gw.url, tool, args))
            assert refused["isError"] is True
            assert "missing API key" in refused["content"][0]["text"]
            allowed = tool_result(call(gw.url, tool, args, key="test-key-2"))
            assert allowed["isError"] is False, allowed
        wrong = call(gw.url, "get_forecast", {"symbol": "BTCUSDT"}, key="not-a-key")
        assert wrong.status_code == 403  # a wrong key is refused at the door, as under /api/v1
        assert wrong.json() == {"detail": "invalid API key"}


def test_mcp_tools_are_open_when_no_key_is_configured(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, api_keys=[])
    with support.GatewayServer(settings) as gw:
        assert tool_result(call(gw.url, "list_instruments", {}))["isError"] is False


def test_mcp_requires_key_closes_every_tool(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, mcp_requires_key=True)
    with support.GatewayServer(settings) as gw:
        assert call(gw.url, "get_forecast", {"symbol": "BTCUSDT"}).status_code == 401
        assert tool_result(call(gw.url, "get_forecast", {"symbol": "BTCUSDT"}, key="test-key-1"))["isError"] is False


def open_stream(url: str, seconds: float) -> tuple[int, float, bytes]:
    """GET /mcp as an event stream: (status, seconds until the answer ended, body)."""
    started = time.monotonic()
    with httpx.stream("GET", f"{url}/mcp", headers={"accept": "text/event-stream"}, timeout=seconds) as response:
        body = response.read()
    return response.status_code, time.monotonic() - started, body


def test_idle_mcp_streams_end_and_are_bounded_in_number(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, api_keys=[], mcp_stream_timeout_s=1.5, mcp_max_streams=2)
    with support.GatewayServer(settings) as gw:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            held = [pool.submit(open_stream, gw.url, 20) for _ in range(2)]
            support.wait_until(lambda: gw.app.state.mcp_guard.open_streams == 2, 10, "streams did not open")
            status, _, body = open_stream(gw.url, 5)
            assert status == 503  # the third one, while two are open
            assert "too many open MCP event streams" in json.loads(body)["detail"]
            for future in held:
                status, seconds, _ = future.result(timeout=20)
                assert status == 200
                assert seconds < 6  # ended by the gateway after mcp_stream_timeout_s, not by the client's 20 s
        assert gw.app.state.mcp_guard.open_streams == 0
        assert open_stream(gw.url, 5)[0] == 200  # a slot is free again
