"""The gateway's HTML pages: instrument grid, symbol fan chart, evaluation.

Each page is a Jinja2 template plus the page's data as embedded JSON (the same cached payloads the API
serves); ``static/candlecast.js`` draws the charts with Plotly from that JSON, so what a chart shows is
exactly what the store holds. Plotly's JS is served from the ``plotly`` Python package (no CDN, no
front-end build), gzip-compressed once in memory.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import anyio.to_thread
import plotly
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from candlecast.config import Settings
from candlecast.gateway.data import DatabaseUnavailable, GatewayData, InputError, Served

__all__ = ["page_router"]

_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass
class _Asset:
    body: bytes
    media_type: str
    version: str
    gzipped: bytes | None = None

    async def response(self, request: Request) -> Response:
        headers = {"cache-control": _IMMUTABLE, "vary": "accept-encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            if self.gzipped is None:  # once per process; plotly.min.js takes a few hundred ms
                self.gzipped = await anyio.to_thread.run_sync(functools.partial(gzip.compress, self.body, 6, mtime=0))
            headers["content-encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def _assets() -> dict[str, _Asset]:
    static = resources.files("candlecast.gateway.pages") / "static"
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    out: dict[str, _Asset] = {}
    for name, body, media_type in (
        ("candlecast.js", (static / "candlecast.js").read_bytes(), "text/javascript; charset=utf-8"),
        ("candlecast.css", (static / "candlecast.css").read_bytes(), "text/css; charset=utf-8"),
        ("plotly.min.js", plotly_js.read_bytes(), "text/javascript; charset=utf-8"),
    ):
        out[name] = _Asset(body, media_type, hashlib.blake2b(body, digest_size=6).hexdigest())
    return out


def _embed(body: bytes) -> str:
    """JSON made safe inside a <script> element."""
    return body.decode().replace("<", "\\u003c")


def page_router(data: GatewayData, settings: Settings) -> APIRouter:
    env = Environment(loader=PackageLoader("candlecast.gateway.pages", "templates"), autoescape=select_autoescape())
    assets = _assets()
    asset_urls = {name: f"/static/{name}?v={asset.version}" for name, asset in assets.items()}
    router = APIRouter(include_in_schema=False)

    def render(template: str, served: Served | None, status: int = 200, **context: Any) -> HTMLResponse:
        config = {
            "now": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "replay_after_s": settings.gateway.replay_after_h * 3600,
            "stale": bool(served and served.stale),
        }
        html = env.get_template(template).render(
            assets=asset_urls,
            stale=config["stale"],
            config_json=_embed(json.dumps(config).encode()),
            data_json=_embed(served.body) if served is not None else "null",
            data=served.value if served is not None else None,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-cache"})

    def error(status: int, detail: str) -> HTMLResponse:
        return render("error.html", None, status=status, title=f"{status}", detail=detail)

    async def page(template: str, read: Any, **context: Any) -> HTMLResponse:
        try:
            served: Served = await read
        except InputError as exc:
            return error(422, str(exc))
        except DatabaseUnavailable:
            return error(503, "The database is unreachable and this page has not been cached yet.")
        if served.status != 200:
            return error(served.status, served.value.get("detail", ""))
        return render(template, served, **context)

    @router.get("/", response_class=HTMLResponse)
    async def home(timeframe: str | None = None) -> HTMLResponse:
        return await page("home.html", data.home_page(timeframe), title="Instruments", page="home")

    @router.get("/symbol/{symbol}", response_class=HTMLResponse)
    async def symbol(symbol: str) -> HTMLResponse:
        return await page("symbol.html", data.symbol_page(symbol), title=symbol.upper(), page="symbol")

    @router.get("/evaluation", response_class=HTMLResponse)
    async def evaluation(window: str | None = None) -> HTMLResponse:
        return await page("evaluation.html", data.evaluation_page(window), title="Evaluation", page="evaluation")

    @router.get("/static/{name}")
    async def static(request: Request, name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            return Response(status_code=404)
        return await asset.response(request)

    return router
