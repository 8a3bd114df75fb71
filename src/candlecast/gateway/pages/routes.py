"""The pages' router: each page is a Jinja2 template plus the page's data as embedded JSON (the same cached
payloads the API serves); ``static/candlecast.js`` draws the charts with Plotly from that JSON, so what a chart
shows is exactly what the store holds.

Bad page parameters are handled one way: the page says what was asked, what exists, and shows what exists (a
timeframe or window that does not exist, a model or timeframe the symbol has no forecast of). An unknown or
malformed symbol, which leaves nothing to show, is an HTML error page with the status the JSON routes would give
(404, 422) that lists the instruments there are: a cached 404 here, a raised ``candlecast.errors`` exception
through the app's one handler (``error_page``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from candlecast.config import Settings
from candlecast.errors import CandlecastError, DatabaseUnavailable, InputError, NotFoundError, http_status
from candlecast.gateway.cache import Served
from candlecast.gateway.pages.assets import asset_urls, find_asset
from candlecast.gateway.payloads.fields import price_decimals, prices
from candlecast.gateway.questions import entry_arrays, touching
from candlecast.gateway.reads import GatewayData
from candlecast.gateway.responses import error_detail, error_response
from candlecast.gateway.routes.deps import DataDep, SettingsDep
from candlecast.store.performance import PERFORMANCE_WINDOWS
from candlecast.store.schema import TIMEFRAMES

__all__ = ["error_page", "router"]

_ENV = Environment(loader=PackageLoader("candlecast.gateway.pages", "templates"), autoescape=select_autoescape())

router = APIRouter(include_in_schema=False)


def _embed(body: bytes) -> str:
    """JSON made safe inside a <script> element."""
    return body.decode().replace("<", "\\u003c")


def render(
    settings: Settings,
    template: str,
    served: Served | None,
    status: int = 200,
    page_config: dict[str, Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    config = {
        "now": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "replay_after_s": settings.gateway.replay_after_h * 3600,
        "stale": bool(served and served.stale),
        **(page_config or {}),
    }
    html = _ENV.get_template(template).render(
        assets=asset_urls(),
        stale=config["stale"],
        config_json=_embed(json.dumps(config).encode()),
        data_json=_embed(served.body) if served is not None else "null",
        data=served.value if served is not None else None,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-cache"})


def _error(settings: Settings, status: int, detail: str, available: list[Any] | None = None) -> HTMLResponse:
    """The error page: what went wrong and, where known, what exists instead (symbols become links)."""
    return render(settings, "error.html", None, status=status, title=f"{status}", detail=detail, available=available)


def error_page(request: Request, exc: CandlecastError) -> HTMLResponse:
    """The HTML answer to an error raised by a page route (the app's exception handler calls this)."""
    if isinstance(exc, DatabaseUnavailable):
        detail = "The database is unreachable and this page has not been cached yet."
    else:
        detail = error_detail(exc)
    available = exc.available if isinstance(exc, NotFoundError) else None
    return _error(request.app.state.settings, http_status(exc), detail, available)


def _page(settings: Settings, template: str, served: Served, **context: Any) -> HTMLResponse:
    if served.status != 200:
        return _error(settings, served.status, served.value.get("detail", ""), served.value.get("available"))
    return render(settings, template, served, **context)


def _asked(**params: str | None) -> str:
    return ", ".join(f"{name} {value!r}" for name, value in params.items() if value)


@router.get("/", response_class=HTMLResponse)
async def home(data: DataDep, settings: SettingsDep, timeframe: str | None = None) -> HTMLResponse:
    notice = None
    try:
        served = await data.home_page(timeframe)
    except InputError:
        shown = settings.gateway.home_timeframe
        notice = f"You asked for timeframe {timeframe!r}; there are {' and '.join(TIMEFRAMES)}. Showing {shown}."
        served = await data.home_page(None)
    return _page(settings, "home.html", served, title="Instruments", page="home", notice=notice)


View = tuple[str | None, str]  # (model or None for candles without a forecast, timeframe)


def _views(page: dict[str, Any]) -> list[View]:
    """What a symbol page can show: each forecast series, and the candles of a timeframe without a forecast."""
    views: list[View] = []
    for key in page["series"]:
        model, timeframe = key.split("|")
        views.append((model, timeframe))
    views.sort(key=lambda v: (v[0], TIMEFRAMES.index(v[1])))
    views += [(None, tf) for tf in TIMEFRAMES if tf in page["no_forecast"]]
    return views


def _describe(view: View) -> str:
    model, timeframe = view
    return f"{timeframe} candles without a forecast" if model is None else f"{model} {timeframe}"


def choose_view(page: dict[str, Any], model: str | None, timeframe: str | None) -> tuple[View | None, str | None]:
    """The view a symbol page opens on for ``?model_name=&timeframe=``, and a notice when that is not what was
    asked: what was asked, what exists, and what is shown instead (never a silent substitution)."""
    views = _views(page)
    if not views:
        return None, None
    default: View = tuple(page["default"].split("|")) if page["default"] else views[0]

    def score(view: View) -> tuple[int, bool, bool, bool]:  # the most matches; the model before the timeframe
        model_matches = model is not None and view[0] == model
        matches = model_matches + (timeframe is not None and view[1] == timeframe)
        return matches, model_matches, view == default, view[0] == default[0]

    chosen = max(views, key=score)
    if (not model or chosen[0] == model) and (not timeframe or chosen[1] == timeframe):
        return chosen, None
    notice = (
        f"You asked for {_asked(model=model, timeframe=timeframe)}; {page['symbol']} has "
        f"{', '.join(_describe(v) for v in views)}. Showing {_describe(chosen)}."
    )
    return chosen, notice


@router.get("/symbol/{symbol}", response_class=HTMLResponse)
async def symbol(
    data: DataDep, settings: SettingsDep, symbol: str, model_name: str | None = None, timeframe: str | None = None
) -> HTMLResponse:
    try:
        served = await data.symbol_page(symbol)
    except InputError as exc:  # a malformed symbol: say so, and list the instruments there are
        return _error(settings, http_status(exc), error_detail(exc), await _symbols(data))
    if served.status != 200:
        return _page(settings, "symbol.html", served)
    view, notice = choose_view(served.value, model_name, timeframe)
    selected = None if view is None else {"model": view[0], "timeframe": view[1]}
    title = served.value["symbol"]
    return render(
        settings, "symbol.html", served, title=title, page="symbol", notice=notice,
        page_config={"selected": selected},
    )  # fmt: skip


@router.get("/symbol/{symbol}/touch")
async def symbol_touch(
    data: DataDep, symbol: str, level: float | None = None, model_name: str | None = None, timeframe: str | None = None
) -> Response:
    """The symbol page's level box: the touch answer (as ``/api/v1/probability?question=touch``) plus the sample
    paths that touch the level (their closes, rounded as served, and their indices), to highlight on the fan."""
    try:
        answer = await data.ask_paths(symbol, "touch", model_name, timeframe, level=level)
        served = await data.paths(symbol, model_name, timeframe)  # the entry the answer came from: a cache hit
    except CandlecastError as exc:
        return error_response(exc)
    hits = touching(served.entry, float(answer["level"]), answer["steps"], answer["side"])
    closes = entry_arrays(served.entry)[0]
    decimals = price_decimals(answer["last_close"])
    indices = [int(i) for i in hits.nonzero()[0]]
    body = {**answer, "touching": indices, "touching_paths": [prices(closes[i], decimals) for i in indices],
            "target_timestamps": served.value["target_timestamps"]}  # fmt: skip
    return JSONResponse(body, headers={"cache-control": "no-cache"})


async def _symbols(data: GatewayData) -> list[str] | None:
    try:
        served = await data.instruments()
    except CandlecastError:
        return None
    return sorted(row["symbol"] for row in served.value.get("instruments", []))


@router.get("/evaluation", response_class=HTMLResponse)
async def evaluation(data: DataDep, settings: SettingsDep, window: str | None = None) -> HTMLResponse:
    notice = None
    try:
        served = await data.evaluation_page(window)
    except InputError:
        windows = " and ".join(PERFORMANCE_WINDOWS)
        notice = f"You asked for window {window!r}; there are {windows}. Showing all."
        served = await data.evaluation_page(None)
    return _page(
        settings, "evaluation.html", served, title="Evaluation", page="evaluation", notice=notice, gw=settings.gateway
    )


@router.get("/static/{name:path}")
async def static(request: Request, name: str) -> Response:
    asset = find_asset(name)
    if asset is None:
        return Response(status_code=404)
    return await asset.response(request)
