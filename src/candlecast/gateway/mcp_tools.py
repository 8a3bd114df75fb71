"""MCP tools for AI agents, on the official MCP Python SDK (streamable HTTP, mounted at ``/mcp``).

The tools read through the gateway's cache (``GatewayData``, as the routes do), so an agent gets the stored
forecast in milliseconds, never a live model run. Every tool is read-only and says so (tool annotations), has a
description per argument with its default and, where the values are fixed, an enum, and an output schema
(``schemas.py``). A result carries its data once, as structured content, plus a one-line text summary; prices
are rounded to the instrument's precision and every answer adds ``data_age_s`` (seconds since ``data_as_of``) to
the HTTP payload, whose ``data_mode`` says live or historical replay.

Errors come back as tool errors (``isError``) in one line: the same detail an HTTP client gets
(``responses.error_detail``) followed by what is available, and the HTTP error body as structured content
(``detail``, ``field``, ``available``). A missing, mistyped or unknown argument is one line naming the argument
too, never the validator's own text.

Keys follow ``/api/v1`` (one policy): with API keys configured, ``list_instruments``, ``get_performance`` and
``ask_paths`` (data ``/api/v1`` serves only with a key) answer a tool error without a valid ``X-API-Key``, while
``get_forecast`` (the showcase's data, public there too) needs none; a wrong key is refused at the door (403);
``mcp_requires_key`` closes all of ``/mcp``. With no key configured (the demo, loopback only:
``app.check_exposure``) all are open.

The ``/mcp`` route is guarded like ``/api/v1``: a per-address rate limit (and per key), and a bound on the GET event
streams (they carry nothing in stateless mode): at most ``mcp_max_streams`` open (then 503 with Retry-After), each
ended after ``mcp_stream_timeout_s``. A refusal is answered by ``responses.error_response``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.context import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import Field, ValidationError, WithJsonSchema
from starlette.routing import Route

from candlecast.errors import CandlecastError, InputError, OverloadedError
from candlecast.gateway.cache import Served
from candlecast.gateway.params import EVERY_SYMBOL, PATH_QUESTIONS, PATH_SIDES
from candlecast.gateway.payloads.fields import parse_iso
from candlecast.gateway.reads import GatewayData
from candlecast.gateway.responses import error_payload, error_response
from candlecast.gateway.schemas import (
    API_VERSION,
    PATH_QUESTION_RULES,
    ForecastWithAge,
    InstrumentsWithAge,
    PathAnswerWithAge,
    PerformanceWithAge,
)
from candlecast.gateway.security import ApiKeys, RateLimiter
from candlecast.store.performance import PERFORMANCE_WINDOWS
from candlecast.store.schema import TIMEFRAMES

__all__ = ["build_mcp", "mcp_route"]

INSTRUCTIONS = (
    "candlecast serves stored probabilistic forecasts of market candles (p10/p50/p90 of the close per future "
    "candle) made by scheduled batch jobs. Call list_instruments to see symbols and which (model, timeframe) "
    "forecasts exist, get_forecast for the newest forecast (with its track record and verdict: whether the model "
    "beats a random walk), get_performance for how past forecasts scored, ask_paths for path questions (will it touch "
    "a level by a time, is a stop hit before a target, how deep is the drawdown) answered from the sample paths. "
    "Timestamps are UTC; a candle's timestamp is its open time. Check data_mode: 'replay' means historical data "
    "replayed as of a past date (data_as_of, data_age_s), not live prices."
)
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # "omit it for the default": a null default would not match the enum


def _optional(description: str) -> Any:
    """An optional argument: its description says what omitting it means."""
    return Field(description=description, json_schema_extra=_drop_default)


def _enum(values: tuple[str, ...]) -> WithJsonSchema:
    """The schema of a string argument with fixed values; the value itself is checked by ``params``, which
    says what was found and what is allowed."""
    return WithJsonSchema({"type": "string", "enum": list(values)})


Symbol = Annotated[str, Field(description="Ticker as list_instruments gives it, e.g. BTCUSDT or SPY (any case).")]
ModelName = Annotated[
    str | None,
    _optional(
        "Model that made the forecast, e.g. baseline or kronos-small (list_instruments shows which exist per "
        "symbol). Omit it for the gateway's default model, baseline unless configured otherwise."
    ),
]
Timeframe = Annotated[
    str | None,
    _optional("Candle timeframe. Omit it for the newest timeframe that has a forecast of this symbol by this model."),
    _enum(TIMEFRAMES),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _with_age(value: dict[str, Any]) -> dict[str, Any]:
    as_of = parse_iso(value.get("data_as_of"))
    age = None if as_of is None else round((_now() - as_of).total_seconds())
    return {**value, "data_age_s": age}


def _age_text(value: dict[str, Any]) -> str:
    age = value.get("data_age_s")
    if value.get("data_mode") is None or age is None:
        return "no data yet"
    days = age / 86400
    how_old = f"{days:.1f} days old" if days >= 2 else f"{age / 3600:.1f} hours old"
    if value["data_mode"] == "replay":
        return f"HISTORICAL REPLAY as of {value['data_as_of']} ({how_old}), not live prices"
    return f"live data as of {value['data_as_of']} ({how_old})"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:g}"


def _result(value: dict[str, Any], summary: str) -> CallToolResult:
    """A successful tool result: the data once, as structured content, and a one-line summary."""
    return CallToolResult(content=[TextContent(type="text", text=summary)], structured_content=value)


def _error(exc: CandlecastError) -> CallToolResult:
    return _error_body(error_payload(exc))


def _error_body(body: dict[str, Any]) -> CallToolResult:
    """A tool error in one line (detail, then what is available), with the HTTP error body as structured content."""
    text = body["detail"]
    available = body.get("available")
    if available:
        items = [" ".join(str(v) for v in a.values()) if isinstance(a, dict) else str(a) for a in available]
        text += ". Available: " + ", ".join(items)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=body, is_error=True)


async def _read(read: Awaitable[Served]) -> dict[str, Any] | CallToolResult:
    """The payload of a read, or the error result to answer with."""
    try:
        served = await read
    except CandlecastError as exc:
        return _error(exc)
    if served.status != 200:
        return _error_body(served.value)
    return _with_age(served.value)


def _argument_error(tool: str, schema: dict[str, Any], exc: ValidationError) -> str:
    """One line naming each argument at fault, from the validator's errors (never its text, which quotes
    internal model names and links to its documentation)."""
    properties = schema.get("properties", {})
    parts = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "arguments"
        if error["type"] == "missing":
            described = properties.get(name, {}).get("description", "")
            parts.append(f"{name}: required" + (f" ({described.rstrip('.')})" if described else ""))
        else:
            found = error.get("input")
            parts.append(f"{name}: {error['msg'].lower()}, found {found!r:.40}")
    return f"{tool}: " + "; ".join(parts)


class _Server(MCPServer):
    """``MCPServer`` whose argument errors are one clear line (and unknown arguments are refused, not ignored)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            known = list(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - set(known))
            if unknown:
                takes = ", ".join(known) if known else "no arguments"
                detail = f"{name}: unknown argument {', '.join(map(repr, unknown))}; it takes {takes}"
                return _error_body({"detail": detail, "field": unknown[0]})
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if tool is None or not isinstance(exc.__cause__, ValidationError):
                raise
            errors = exc.__cause__.errors()
            field = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
            return _error_body({"detail": _argument_error(name, tool.parameters, exc.__cause__), "field": field})


def _forecast_summary(v: dict[str, Any]) -> str:
    label = f" ({v['name']})" if v.get("name") else ""
    unit = f" {v['quote_currency']}" if v.get("quote_currency") else ""
    steps = len(v["target_timestamps"])
    last = steps - 1
    return (
        f"{v['symbol']}{label} {v['timeframe']} forecast by {v['model_name']}: {_age_text(v)}. "
        f"{steps} steps, candles opening {v['target_timestamps'][0] if steps else '-'} to "
        f"{v['target_timestamps'][last] if steps else '-'}; last close {_fmt(v['last_close'])}{unit}; "
        f"last step p10/p50/p90 {_fmt(v['p10'][last] if steps else None)} / {_fmt(v['p50'][last] if steps else None)}"
        f" / {_fmt(v['p90'][last] if steps else None)}{unit}. {_track_text(v['track_record'])} "
        "Every value is in the structured content."
    )


def _percent(v: float | None, signed: bool = False) -> str:
    return "n/a" if v is None else f"{v * 100:{'+' if signed else ''}.1f}%"


def _interval(low: float | None, high: float | None) -> str:
    """'90% interval a-b%, ' of a coverage, or nothing when it has none."""
    if low is None or high is None:
        return ""
    return f"90% interval {low * 100:.1f}-{high * 100:.1f}%, "


def _paths_summary(v: dict[str, Any]) -> str:
    unit = f" {v['quote_currency']}" if v.get("quote_currency") else ""
    head = f"{v['symbol']} {v['timeframe']} forecast {v['forecast_id']} by {v['model_name']} ({_age_text(v)}), "
    span = f"over {v['steps']} of {v['horizon_steps']} candles (to the close at {v['by']}), {v['paths']} paths, "
    span += f"judged on {v['basis']}: "
    question = v["question"]
    if question in ("touch", "close"):
        verb = "touches" if question == "touch" else "closes"
        what = f"P(it {verb} {v['side']} {_fmt(v['level'])}{unit}) = {v['probability']:.3f}"
        what += f" ± {v['standard_error']:.3f}."
    elif question == "first":
        o = v["outcomes"]
        what = (
            f"P({_fmt(v['level'])} first) = {o['a_first']['probability']:.3f}, P({_fmt(v['level_b'])} first) = "
            f"{o['b_first']['probability']:.3f}, same candle {o['same_step']['probability']:.3f}, neither "
            f"{o['neither']['probability']:.3f} (each ± about {o['a_first']['standard_error']:.3f})."
        )
    else:
        parts = ", ".join(f"q{round(q['quantile'] * 100)} {_percent(q['value'])}" for q in v["quantiles"])
        what = f"maximum {'drawdown' if question == 'drawdown' else 'run-up'} {parts}."
    return head + span + what


def _track_text(t: dict[str, Any]) -> str:
    """The track record in one sentence, verdict first."""
    head = f"Track record ({t['window']}): {t['verdict'].upper()}"
    if t["scored_forecasts"] == 0:
        return f"{head}: no forecast of this series scored yet (a verdict needs {t['min_scored']})."
    p = "n/a" if t["dm_pvalue"] is None else f"{t['dm_pvalue']:.3g}"
    return (
        f"{head}: {t['scored_forecasts']} scored forecasts, p10-p90 coverage {_percent(t['coverage'])} "
        f"({_interval(t['coverage_low'], t['coverage_high'])}nominal {_percent(t['nominal_coverage'])}), "
        f"CRPS skill vs random walk {_percent(t['crps_skill'], signed=True)} "
        f"(Diebold-Mariano p = {p})."
    )


def _key_refusal(keys: ApiKeys | None, headers: Mapping[str, str] | None) -> CallToolResult | None:
    """The tool error for a keyed tool called without a valid key (None: go ahead, or no keys configured)."""
    if keys is None:
        return None
    denied = keys.check((headers or {}).get("x-api-key"))
    return None if denied is None else _error(denied)


def build_mcp(data: GatewayData, keys: ApiKeys | None = None) -> MCPServer:
    """The tools; ``keys`` (when API keys are configured) guard list_instruments and get_performance."""
    server: MCPServer = _Server(
        "candlecast",
        title="candlecast forecasts",
        version=API_VERSION,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )

    @server.tool(annotations=READ_ONLY, title="Newest forecast of a symbol")
    async def get_forecast(
        symbol: Symbol, model_name: ModelName = None, timeframe: Timeframe = None
    ) -> Annotated[CallToolResult, ForecastWithAge]:
        """The newest stored forecast of `symbol`: p10/p50/p90 of the close of each future candle
        (target_timestamps, candle open times, UTC), last_close, generated_at, as_of, the instrument's name and
        quote currency, data_mode ('replay' or 'live'), data_as_of, data_age_s, `stale` (true when the
        database could not confirm it is the newest), and `track_record`: how this model's past forecasts of the
        series did over the trailing window (coverage of the p10-p90 band against the nominal 0.8 with its 90%
        interval coverage_low..coverage_high, scored forecasts, CRPS skill vs a random walk, Diebold-Mariano
        p-value) with a plain verdict: 'edge' (skill > 0, p < alpha, 0.05 by default), 'no edge', 'worse than
        random walk' (skill < 0, p < alpha) or 'too few scores' (fewer than min_scored, 30 by default, scored
        forecasts), and `provenance`: model revision, checkpoint
        hash, adapter, code version, configuration hash, data cutoffs, seed and `inputs_changed` (true: an input
        candle was rewritten after the forecast was made). Defaults: model baseline, the newest timeframe
        that has a forecast. An unknown symbol or a missing forecast is an error listing what is available."""
        value = await _read(data.showcase(symbol, model_name, timeframe))
        return value if isinstance(value, CallToolResult) else _result(value, _forecast_summary(value))

    @server.tool(annotations=READ_ONLY, title="Instruments and their forecasts")
    async def list_instruments(ctx: Context[Any, Any]) -> Annotated[CallToolResult, InstrumentsWithAge]:
        """Every instrument: symbol, name (what the series really is, e.g. an index level standing in for an ETF),
        quote currency, asset class, candle counts and first/last candle per timeframe, and the newest forecast
        of each (model, timeframe) it has; data_mode and data_age_s of the newest forecast."""
        refused = _key_refusal(keys, ctx.headers)
        if refused is not None:
            return refused
        value = await _read(data.instruments())
        if isinstance(value, CallToolResult):
            return value
        rows = value["instruments"]
        with_forecast = sum(1 for row in rows if row["forecasts"])
        summary = (
            f"{len(rows)} instruments ({', '.join(row['symbol'] for row in rows)}), {with_forecast} with forecasts; "
            f"{_age_text(value)}. Every value is in the structured content."
        )
        return _result(value, summary)

    @server.tool(annotations=READ_ONLY, title="How past forecasts scored")
    async def get_performance(
        ctx: Context[Any, Any],
        symbol: Annotated[
            str,
            Field(description=f"Ticker, e.g. SPY, or {EVERY_SYMBOL!r} for every symbol (required: no blank 'all')."),
        ],
        model_name: Annotated[str | None, _optional("Only this model, e.g. baseline. Omit it for every model.")] = None,
        timeframe: Annotated[str | None, _optional("Only this timeframe. Omit it for both."), _enum(TIMEFRAMES)] = None,
        window: Annotated[
            str | None,
            _optional(
                "Which scored forecasts: 'all' (every one; the default when omitted) or 'trailing_30d' (those of the "
                "last 30 days)."
            ),
            _enum(PERFORMANCE_WINDOWS),
        ] = None,
    ) -> Annotated[CallToolResult, PerformanceWithAge]:
        """How past forecasts scored, per (symbol, timeframe, model): forecasts and steps scored, hit rate
        (direction of the p50), p10-p90 coverage of the served band (coverage, with its 90% interval
        coverage_low..coverage_high: overlapping forecasts measure it only roughly) and of the model's own band
        (coverage_raw) against the nominal 0.8, mean fair CRPS (also in basis points of the last close), CRPS
        skill vs a random walk with its Diebold-Mariano p-value and the verdict, pinball loss, Sharpe, and the
        evaluation period; plus calibration over the same window (share of realised closes below p10/p50/p90,
        nominal 0.1/0.5/0.9, and pit_counts: how many outcomes fell in each tenth of their sample paths, equal
        counts for a calibrated model). Given a symbol, model_name and timeframe, by_step has that series'
        coverage and skill per horizon step. An unknown symbol or model is an error listing what is available."""
        refused = _key_refusal(keys, ctx.headers)
        if refused is not None:
            return refused
        if not symbol.strip():
            return _error(InputError("symbol", f"is blank: give a symbol, or {EVERY_SYMBOL!r} for every symbol"))
        value = await _read(data.performance(symbol, model_name, timeframe, window))
        if isinstance(value, CallToolResult):
            return value
        rows = value["rows"]
        scope = " ".join(str(v) for v in (value["symbol"], value["model_name"], value["timeframe"]) if v)
        summary = (
            f"{len(rows)} score rows for {scope or 'every symbol and model'} (window {value['window']})"
            + (f", and {len(value['by_step']['step'])} per horizon step (by_step)" if value["by_step"] else "")
            + f"; {_age_text(value)}. Every value is in the structured content."
        )
        return _result(value, summary)

    @server.tool(annotations=READ_ONLY, title="Ask the sample paths")
    async def ask_paths(
        ctx: Context[Any, Any],
        symbol: Symbol,
        question: Annotated[str, Field(description=PATH_QUESTION_RULES), _enum(PATH_QUESTIONS)],
        level: Annotated[
            float | None,
            _optional(
                "A price in the instrument's quote currency (the forecast's last_close is a reference). Required "
                "for touch, close and first (level A, e.g. the stop); ignored by drawdown and runup."
            ),
        ] = None,
        level_b: Annotated[
            float | None, _optional("Level B of question 'first' (e.g. the target price); required there.")
        ] = None,
        side: Annotated[
            str | None,
            _optional(
                "touch/close: whether the price must reach the level from above or below. Omit it for the side the "
                "level lies on from the last close (above when level >= last_close)."
            ),
            _enum(PATH_SIDES),
        ] = None,
        by: Annotated[
            str | None,
            _optional(
                "A time, ISO 8601 (UTC unless it has an offset), e.g. 2024-03-02T12:00:00Z: the question covers the "
                "forecast candles that close by then. Omit it (and steps) for the whole forecast horizon."
            ),
        ] = None,
        steps: Annotated[
            int | None, _optional("Instead of by: the number of forecast candles to cover (1 to the horizon).")
        ] = None,
        max_standard_error: Annotated[
            float | None,
            _optional(
                "Refuse the answer if a probability's Monte-Carlo standard error is larger than this (e.g. 0.02): "
                "too few sample paths for that precision. Omit it to accept any."
            ),
        ] = None,
        model_name: ModelName = None,
        timeframe: Timeframe = None,
        forecast_id: Annotated[
            int | None, _optional("A given past forecast (forecast_id of an earlier answer). Omit it for the newest.")
        ] = None,
    ) -> Annotated[CallToolResult, PathAnswerWithAge]:
        """Questions about the price path, answered from the stored sample paths of the newest forecast of
        `symbol` (or of forecast_id): 'touch' - probability the price reaches `level` by a time; 'close' -
        probability the close at that time is above/below `level`; 'first' - probability that `level` (e.g. a stop)
        is reached before `level_b` (e.g. a target), with b first, same candle and neither; 'drawdown' / 'runup' -
        quantiles (0.1, 0.5, 0.9) of the largest fall below the running peak / rise above the running low, as
        fractions. Every probability comes with its Monte-Carlo standard error and the number of paths; `basis`
        says whether touches were judged on sampled highs/lows (models with OHLC paths) or on closes. Defaults:
        model baseline, the newest timeframe with a forecast, the whole horizon, the side of the level from the
        last close. Errors (unknown symbol, missing level, a time outside the horizon, too few paths for
        max_standard_error) name the argument at fault. Needs an API key when keys are configured, as
        /api/v1/probability does."""
        refused = _key_refusal(keys, ctx.headers)
        if refused is not None:
            return refused
        try:
            value = await data.ask_paths(
                symbol, question, model_name, timeframe, forecast_id, level, level_b, side, steps, by,
                max_standard_error,
            )  # fmt: skip
        except CandlecastError as exc:
            return _error(exc)
        value = _with_age(value)
        return _result(value, _paths_summary(value))

    return server


class _Guard:
    """Per-address (and per-key) rate limit, the API key (always with ``require_key``, else only a key presented
    is checked), and the bound on GET event streams, in front of the MCP app."""

    def __init__(
        self,
        app: Any,
        limiter: RateLimiter,
        keys: ApiKeys | None,
        require_key: bool = False,
        max_streams: int = 16,
        stream_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.keys = keys
        self.require_key = require_key
        self.max_streams = max_streams
        self.stream_timeout_s = stream_timeout_s
        self.open_streams = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client")
        denied = self.limiter.take("addr:" + (client[0] if client else "unknown"))
        presented = dict(scope["headers"]).get(b"x-api-key")
        if denied is None and self.keys is not None and (self.require_key or presented):
            denied = self.keys.check(presented.decode("latin-1") if presented else None)
            if denied is None and presented:
                denied = self.limiter.take("key:" + hashlib.sha256(presented).hexdigest()[:24])
        if denied is not None:
            await error_response(denied)(scope, receive, send)
        elif scope.get("method") == "GET":
            await self._stream(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _stream(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A GET event stream, if fewer than ``max_streams`` are open, ended (cleanly) after ``stream_timeout_s``."""
        if self.open_streams >= self.max_streams:
            busy = OverloadedError(f"too many open MCP event streams ({self.max_streams}); retry later")
            await error_response(busy)(scope, receive, send)
            return
        state = {"started": False, "ended": False}

        async def tracked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        self.open_streams += 1
        try:
            with anyio.move_on_after(self.stream_timeout_s):
                await self.app(scope, receive, tracked)
        finally:
            self.open_streams -= 1
        if state["started"] and not state["ended"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def mcp_route(
    server: MCPServer,
    host: str,
    limiter: RateLimiter,
    keys: ApiKeys | None,
    require_key: bool = False,
    max_streams: int = 16,
    stream_timeout_s: float = 30.0,
) -> Route:
    """The ``/mcp`` route (stateless streamable HTTP, JSON responses); run ``server.session_manager.run()``
    in the app's lifespan. ``keys``: the configured keys (None when there are none)."""
    # Bound to a loopback address, the SDK accepts only loopback Host/Origin headers (DNS-rebinding
    # protection); bound elsewhere, the gateway is meant to be reached by other names and checks none.
    app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True, host=host)
    inner = next(r for r in app.routes if isinstance(r, Route) and r.path == "/mcp")
    guard = _Guard(inner.endpoint, limiter, keys, require_key, max_streams, stream_timeout_s)
    return Route("/mcp", endpoint=guard)
