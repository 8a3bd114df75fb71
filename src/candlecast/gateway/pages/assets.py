"""Static files of the pages: ``static/candlecast.js`` and ``static/candlecast.css`` (package data, inside the
wheel), Plotly's JS served from the ``plotly`` Python package, and Swagger UI and ReDoc for ``/docs`` and
``/redoc`` served from the ``fastapi-offline`` package (MIT; it ships ``swagger-ui-bundle.js``,
``swagger-ui.css`` and ``redoc.standalone.js``): no CDN, no front-end build, so everything works offline. Each
is served with a content hash in its URL and ``Cache-Control: immutable``, gzip-compressed once per process on
first request."""

from __future__ import annotations

import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import anyio.to_thread
import plotly
from fastapi import Request
from fastapi.responses import Response

__all__ = ["Asset", "asset_urls", "assets", "doc_asset_urls", "doc_assets", "find_asset"]

_IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass
class Asset:
    body: bytes
    media_type: str
    version: str  # a hash of the body, in the asset's URL
    gzipped: bytes | None = None

    async def response(self, request: Request) -> Response:
        headers = {"cache-control": _IMMUTABLE, "vary": "accept-encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            if self.gzipped is None:  # once per process; plotly.min.js takes a few hundred ms
                self.gzipped = await anyio.to_thread.run_sync(functools.partial(gzip.compress, self.body, 6, mtime=0))
            headers["content-encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


@functools.cache
def assets() -> dict[str, Asset]:
    """The assets by file name, read once per process."""
    static = resources.files("candlecast.gateway.pages") / "static"
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    out: dict[str, Asset] = {}
    for name, body, media_type in (
        ("candlecast.js", (static / "candlecast.js").read_bytes(), "text/javascript; charset=utf-8"),
        ("candlecast.css", (static / "candlecast.css").read_bytes(), "text/css; charset=utf-8"),
        ("plotly.min.js", plotly_js.read_bytes(), "text/javascript; charset=utf-8"),
    ):
        out[name] = Asset(body, media_type, hashlib.blake2b(body, digest_size=6).hexdigest())
    return out


@functools.cache
def asset_urls() -> dict[str, str]:
    """File name -> versioned URL, for the templates."""
    return {name: f"/static/{name}?v={asset.version}" for name, asset in assets().items()}


_DOC_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


# ReDoc's one reference to another host: the "API docs by Redocly" logo. Offline it would be a broken image.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_SVG = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@functools.cache
def doc_assets() -> dict[str, Asset]:
    """Swagger UI and ReDoc, read once per process on the first visit of /docs or /redoc."""
    static = resources.files("fastapi_offline") / "static"
    out: dict[str, Asset] = {}
    for name, media_type in _DOC_FILES.items():
        body = (static / name).read_bytes().replace(_REDOC_LOGO, _EMPTY_SVG)
        out[name] = Asset(body, media_type, hashlib.blake2b(body, digest_size=6).hexdigest())
    return out


def doc_asset_urls() -> dict[str, str]:
    return {name: f"/static/docs/{name}?v={asset.version}" for name, asset in doc_assets().items()}


def find_asset(path: str) -> Asset | None:
    """The asset at ``/static/<path>``: a page asset, or ``docs/<name>``."""
    if path.startswith("docs/"):
        return doc_assets().get(path.removeprefix("docs/"))
    return assets().get(path)
