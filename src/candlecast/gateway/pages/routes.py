"""The pages' router: each page is a Jinja2 template plus the page's data as embedded JSON (the same cached
payloads the API serves); ``static/candlecast.js`` draws the charts with Plotly from that JSON, so what a chart
shows is exactly what the store holds.

A page that cannot be answered is an HTML error page with the status the JSON routes would give: a cached
404 here, a raised ``candlecast.errors`` exception through the app's one handler (``error_page``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from candlecast.config import Settings
from candlecast.errors import CandlecastError, DatabaseUnavailable, http_status
from candlecast.gateway.cache import Served
from candlecast.gateway.pages.assets import asset_urls, assets
from candlecast.gateway.responses import error_detail
from candlecast.gateway.routes.deps import DataDep, SettingsDep

__all__ = ["error_page", "router"]

_ENV = Environment(loader=PackageLoader("candlecast.gateway.pages", "templates"), autoescape=select_autoescape())

router = APIRouter(include_in_schema=False)


def _embed(body: bytes) -> str:
    """JSON made safe inside a <script> element."""
    return body.decode().replace("<", "\\u003c")


def render(settings: Settings, template: str, served: Served | None, status: int = 200, **context: Any) -> HTMLResponse:
    config = {
        "now": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "replay_after_s": settings.gateway.replay_after_h * 3600,
        "stale": bool(served and served.stale),
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


def _error(settings: Settings, status: int, detail: str) -> HTMLResponse:
    return render(settings, "error.html", None, status=status, title=f"{status}", detail=detail)


def error_page(request: Request, exc: CandlecastError) -> HTMLResponse:
    """The HTML answer to an error raised by a page route (the app's exception handler calls this)."""
    if isinstance(exc, DatabaseUnavailable):
        detail = "The database is unreachable and this page has not been cached yet."
    else:
        detail = error_detail(exc)
    return _error(request.app.state.settings, http_status(exc), detail)


def _page(settings: Settings, template: str, served: Served, **context: Any) -> HTMLResponse:
    if served.status != 200:
        return _error(settings, served.status, served.value.get("detail", ""))
    return render(settings, template, served, **context)


@router.get("/", response_class=HTMLResponse)
async def home(data: DataDep, settings: SettingsDep, timeframe: str | None = None) -> HTMLResponse:
    return _page(settings, "home.html", await data.home_page(timeframe), title="Instruments", page="home")


@router.get("/symbol/{symbol}", response_class=HTMLResponse)
async def symbol(data: DataDep, settings: SettingsDep, symbol: str) -> HTMLResponse:
    return _page(settings, "symbol.html", await data.symbol_page(symbol), title=symbol.upper(), page="symbol")


@router.get("/evaluation", response_class=HTMLResponse)
async def evaluation(data: DataDep, settings: SettingsDep, window: str | None = None) -> HTMLResponse:
    served = await data.evaluation_page(window)
    return _page(settings, "evaluation.html", served, title="Evaluation", page="evaluation")


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        return Response(status_code=404)
    return await asset.response(request)
