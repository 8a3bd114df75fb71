"""The MCP tools at /mcp, called through the official MCP SDK client over streamable HTTP: what they answer,
how they describe themselves to an agent, and how they say what went wrong."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from sqlalchemy.engine import Engine
from tests.gateway import support

from candlecast import paths
from candlecast.gateway.schemas import ForecastWithAge, InstrumentsWithAge, PathAnswerWithAge, PerformanceWithAge
from candlecast.store.performance import PERFORMANCE_WINDOWS, performance
from candlecast.store.predictions import latest_prediction

Calls = dict[str, tuple[str, dict[str, Any]]]


def call_tools(
    url: str,
    calls: Calls,
    extra: Callable[[Client], Awaitable[dict[str, Any]]] | None = None,
    key: str = "test-key-1",
) -> Any:
    """Each named (tool, arguments) call in one client session, plus whatever ``extra`` reads from the client;
    with an API key (the fixtures' gateways have keys configured, so list_instruments and get_performance need one,
    as /api/v1 does: test_mcp_policy.py)."""

    async def session() -> dict[str, Any]:
        async with (
            create_mcp_http_client(headers={"x-api-key": key}) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            results: dict[str, Any] = {name: await client.call_tool(tool, args) for name, (tool, args) in calls.items()}
            if extra is not None:
                results.update(await extra(client))
            return results

    return asyncio.run(session())


def text(result: Any) -> str:
    [content] = result.content
    return str(content.text)


def test_mcp_tools_answer_from_the_same_cache_as_the_showcase(gateway: Any, store: Engine) -> None:
    showcase = gateway.get("/showcase/ml-prediction/BTCUSDT").json()
    results = call_tools(
        f"{gateway.url}/mcp",
        {
            "forecast": ("get_forecast", {"symbol": "BTCUSDT"}),
            "daily": ("get_forecast", {"symbol": "SPY", "timeframe": "1d"}),
            "unknown": ("get_forecast", {"symbol": "NOPE"}),
            "malformed": ("get_forecast", {"symbol": "BTC", "timeframe": "5m"}),
            "instruments": ("list_instruments", {}),
            "performance": ("get_performance", {"symbol": "SPY", "model_name": "baseline"}),
        },
    )

    forecast = results["forecast"]
    assert forecast.is_error is False
    age = forecast.structured_content.pop("data_age_s")
    assert forecast.structured_content == showcase  # the same cached answer, plus its age
    expected_age = (datetime.now(UTC) - support.AS_OF).total_seconds()
    assert abs(age - expected_age) < 60
    daily = results["daily"].structured_content
    assert (daily["symbol"], daily["timeframe"], daily["stale"]) == ("SPY", "1d", False)

    assert results["unknown"].is_error is True
    assert text(results["unknown"]).startswith("unknown symbol 'NOPE'")
    assert results["malformed"].is_error is True
    assert text(results["malformed"]).startswith("timeframe: must be one of ['1h', '1d'], found '5m'")

    symbols = {row["symbol"] for row in results["instruments"].structured_content["instruments"]}
    assert symbols == {"BTCUSDT", "SPY", "EURUSD"}
    rows = results["performance"].structured_content["rows"]
    [expected] = performance(store, symbol="SPY", model_name="baseline")
    assert [(r["symbol"], r["model_name"], r["coverage"]) for r in rows] == [("SPY", "baseline", expected.coverage)]
    assert rows[0]["name"] == support.LABELS["SPY"][0]

    metrics = gateway.get("/metrics").text
    hits = next(
        line for line in metrics.splitlines() if line.startswith('candlecast_gateway_cache_total{result="hit"}')
    )
    assert float(hits.split()[-1]) == 1.0  # get_forecast BTCUSDT: the entry the showcase request loaded


def test_tools_describe_every_argument_its_default_and_values_and_declare_outputs_and_read_only(
    gateway: Any,
) -> None:
    async def listing(client: Client) -> dict[str, Any]:
        tools = await client.list_tools()
        return {"tools": {tool.name: tool for tool in tools.tools}, "server": client.server_info}

    found = call_tools(f"{gateway.url}/mcp", {}, listing)
    tools, server = found["tools"], found["server"]
    assert set(tools) == {"get_forecast", "list_instruments", "get_performance", "ask_paths"}
    assert server.name == "candlecast" and server.version == metadata.version("candlecast")

    forecast = tools["get_forecast"].input_schema
    assert forecast["required"] == ["symbol"]
    assert set(forecast["properties"]) == {"symbol", "model_name", "timeframe"}
    assert all(p.get("description") for p in forecast["properties"].values())
    assert forecast["properties"]["timeframe"]["enum"] == ["1h", "1d"]
    assert "default" not in forecast["properties"]["timeframe"]  # omitted, not null: the enum has no null
    assert "newest timeframe that has a forecast" in forecast["properties"]["timeframe"]["description"]
    assert "baseline" in forecast["properties"]["model_name"]["description"]  # the default, named

    perf = tools["get_performance"].input_schema
    assert perf["required"] == ["symbol"]
    assert perf["properties"]["window"]["enum"] == list(PERFORMANCE_WINDOWS)
    assert perf["properties"]["timeframe"]["enum"] == ["1h", "1d"]
    assert "'*' for every symbol" in perf["properties"]["symbol"]["description"]

    outputs = {"get_forecast": ForecastWithAge, "list_instruments": InstrumentsWithAge,
               "get_performance": PerformanceWithAge, "ask_paths": PathAnswerWithAge}  # fmt: skip
    for name, tool in tools.items():
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
        assert tool.annotations.idempotent_hint is True
        assert tool.output_schema is not None
        assert set(outputs[name].model_json_schema()["properties"]) <= set(tool.output_schema["properties"])
    assert {"data_mode", "data_age_s", "p50"} <= set(tools["get_forecast"].output_schema["properties"])


def test_without_a_timeframe_the_newest_one_with_a_forecast_is_served_and_says_it_is_a_replay(
    extended_gateway: Any,
) -> None:
    results = call_tools(
        f"{extended_gateway.url}/mcp",
        {
            "qqq": ("get_forecast", {"symbol": "qqq"}),  # only a daily forecast
            "spy": ("get_forecast", {"symbol": "SPY"}),  # 1h and 1d as of the same time: the default, 1h
            "instruments": ("list_instruments", {}),
        },
    )
    qqq = results["qqq"]
    assert qqq.is_error is False
    value = qqq.structured_content
    assert (value["symbol"], value["timeframe"], value["model_name"]) == ("QQQ", "1d", "baseline")
    assert (value["name"], value["quote_currency"]) == support.EXTRA_LABELS["QQQ"]
    assert (value["data_mode"], value["data_as_of"]) == ("replay", "2024-02-16T00:00:00Z")
    assert value["data_age_s"] > 365 * 86400
    assert results["spy"].structured_content["timeframe"] == "1h"

    # one compact form: the data once, as structured content; the text is a one-line summary, not the data again
    summary = text(qqq)
    assert "\n" not in summary and len(summary) < 600
    assert summary.startswith("QQQ (Nasdaq Composite index level (^IXIC), proxy for QQQ) 1d forecast by baseline")
    assert "HISTORICAL REPLAY as of 2024-02-16T00:00:00Z" in summary and "days old" in summary
    assert "10 steps, candles opening 2024-02-16T00:00:00Z to 2024-02-29T00:00:00Z" in summary
    assert value["p50"][-1] is not None and f"{value['p50'][-1]:g}" in summary
    for prices in (value["p10"], value["p50"], value["p90"], [value["last_close"]]):
        assert all(round(v, 2) == v for v in prices)  # QQQ at ~15000: two decimals

    instruments = results["instruments"]
    assert "\n" not in text(instruments) and len(text(instruments)) < 300
    assert len(json.dumps(instruments.structured_content, separators=(",", ":"))) < 5000
    assert instruments.structured_content["data_mode"] == "replay"


def test_not_found_answers_list_what_is_available(extended_gateway: Any) -> None:
    results = call_tools(
        f"{extended_gateway.url}/mcp",
        {
            "symbol": ("get_forecast", {"symbol": "NOPE"}),
            "model": ("get_forecast", {"symbol": "QQQ", "model_name": "kronos-small"}),
            "timeframe": ("get_forecast", {"symbol": "QQQ", "timeframe": "1h"}),
            "never": ("get_forecast", {"symbol": "AAPL"}),
            "perf_symbol": ("get_performance", {"symbol": "NOPE"}),
            "perf_model": ("get_performance", {"symbol": "*", "model_name": "kronos-mega"}),
            "perf_all": ("get_performance", {"symbol": "*", "timeframe": "1h", "window": "trailing_30d"}),
            "perf_unscored": ("get_performance", {"symbol": "AAPL"}),
        },
    )
    symbols = ["AAPL", "BTCUSDT", "EURUSD", "QQQ", "SPY"]
    assert results["symbol"].is_error
    assert results["symbol"].structured_content == {"detail": "unknown symbol 'NOPE'", "available": symbols}
    assert text(results["symbol"]) == "unknown symbol 'NOPE'. Available: " + ", ".join(symbols)

    for name in ("model", "timeframe"):
        assert results[name].is_error
        assert results[name].structured_content["available"] == [{"model_name": "baseline", "timeframe": "1d"}]
        assert text(results[name]).endswith(". Available: baseline 1d")
    assert text(results["model"]).startswith("no forecast of QQQ by model 'kronos-small'")
    assert text(results["timeframe"]).startswith("no 1h forecast of QQQ by model 'baseline'")
    assert results["never"].structured_content == {
        "detail": "no forecast of AAPL is stored; 1h: no 1h candles are stored; 1d: its 1d candles end 2013-03-01, "
        "before any forecast was made (the stored forecasts are as of 2024-02-16 → 2024-03-01)",
        "available": [],
    }

    assert results["perf_symbol"].is_error and results["perf_symbol"].structured_content["available"] == symbols
    assert results["perf_model"].is_error
    assert results["perf_model"].structured_content == {
        "detail": "no forecast by model 'kronos-mega' is stored",
        "available": ["baseline", "kronos-small"],
    }
    every = results["perf_all"].structured_content
    assert every["symbol"] is None and every["window"] == "trailing_30d"
    assert {r["symbol"] for r in every["rows"]} == {"BTCUSDT", "SPY", "EURUSD"}
    unscored = results["perf_unscored"]  # known, never scored: an answer, not an error
    assert unscored.is_error is False and unscored.structured_content["rows"] == []


def test_missing_mistyped_and_unknown_arguments_get_one_clear_line(gateway: Any) -> None:
    results = call_tools(
        f"{gateway.url}/mcp",
        {
            "missing": ("get_forecast", {}),
            "blank": ("get_performance", {"symbol": " "}),
            "no_symbol": ("get_performance", {"model_name": "baseline"}),
            "enum": ("get_performance", {"symbol": "SPY", "window": "forever"}),
            "type": ("get_forecast", {"symbol": 42}),
            "unknown": ("get_forecast", {"symbol": "SPY", "tf": "1d"}),
        },
    )
    expected = {
        "missing": "get_forecast: symbol: required "
        "(Ticker as list_instruments gives it, e.g. BTCUSDT or SPY (any case))",
        "blank": "symbol: is blank: give a symbol, or '*' for every symbol",
        "no_symbol": "get_performance: symbol: required (Ticker, e.g. SPY, or '*' for every symbol (required: no "
        "blank 'all'))",
        "enum": "window: must be one of ['all', 'trailing_30d'], found 'forever'",
        "type": "get_forecast: symbol: input should be a valid string, found 42",
        "unknown": "get_forecast: unknown argument 'tf'; it takes symbol, model_name, timeframe",
    }
    fields = {"missing": "symbol", "blank": "symbol", "no_symbol": "symbol", "enum": "window", "type": "symbol",
              "unknown": "tf"}  # fmt: skip
    for name, line in expected.items():
        result = results[name]
        assert result.is_error, name
        assert text(result) == line, name
        assert "pydantic" not in text(result) and "http" not in text(result)
        assert result.structured_content["field"] == fields[name], name


def test_ask_paths_answers_path_questions_with_a_schema_an_agent_can_use_unaided(gateway: Any, store: Engine) -> None:
    p = latest_prediction(store, "BTCUSDT", "baseline", "1h", with_samples=True)
    assert p is not None and p.samples is not None
    level = float(np.quantile(p.samples.max(axis=1), 0.5))
    by = p.target_ts[5].isoformat()  # opens then: the candles closing by then are the first five

    async def listing(client: Client) -> dict[str, Any]:
        tools = await client.list_tools()
        return {"schema": next(t for t in tools.tools if t.name == "ask_paths").input_schema}

    results = call_tools(
        f"{gateway.url}/mcp",
        {
            "touch": ("ask_paths", {"symbol": "BTCUSDT", "question": "touch", "level": level, "by": by}),
            "first": ("ask_paths", {"symbol": "BTCUSDT", "question": "first", "level": p.last_close * 0.99,
                                    "level_b": p.last_close * 1.01}),
            "drawdown": ("ask_paths", {"symbol": "BTCUSDT", "question": "drawdown"}),
            "no_level": ("ask_paths", {"symbol": "BTCUSDT", "question": "touch"}),
            "precise": ("ask_paths", {"symbol": "BTCUSDT", "question": "touch", "level": level,
                                      "max_standard_error": 0.01}),
            "bad_question": ("ask_paths", {"symbol": "BTCUSDT", "question": "will it moon"}),
        },
        listing,
    )  # fmt: skip
    schema = results["schema"]
    assert schema["required"] == ["symbol", "question"]
    assert schema["properties"]["question"]["enum"] == ["touch", "close", "first", "drawdown", "runup"]
    assert schema["properties"]["side"]["enum"] == ["above", "below"]
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert "quote currency" in schema["properties"]["level"]["description"]
    assert "whole forecast horizon" in schema["properties"]["by"]["description"]
    assert "baseline" in schema["properties"]["model_name"]["description"]

    touch = results["touch"]
    assert touch.is_error is False
    value = touch.structured_content
    PathAnswerWithAge.model_validate(value)
    expected = paths.touch(p.samples, level, 5, above=True)
    assert (value["steps"], value["probability"], value["standard_error"]) == (
        5, expected.probability, expected.standard_error,
    )  # fmt: skip
    assert value["data_mode"] == "replay" and value["data_age_s"] > 0
    assert f"P(it touches above {level:g} USD) = {expected.probability:.3f}" in text(touch)
    assert "HISTORICAL REPLAY" in text(touch) and "32 paths" in text(touch)
    outcomes = results["first"].structured_content["outcomes"]
    assert set(outcomes) == {"a_first", "b_first", "same_step", "neither"}
    assert [q["quantile"] for q in results["drawdown"].structured_content["quantiles"]] == [0.1, 0.5, 0.9]

    assert results["no_level"].is_error is True and text(results["no_level"]).startswith("level: is required")
    assert results["precise"].is_error is True
    assert results["precise"].structured_content["field"] == "max_standard_error"
    assert "paths would be needed" in text(results["precise"])
    assert text(results["bad_question"]).startswith("question: must be one of")
