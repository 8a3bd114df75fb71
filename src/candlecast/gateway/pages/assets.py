"""Static files of the pages: ``static/candlecast.js`` and ``static/candlecast.css`` (package data, inside the
wheel), and Plotly's JS served from the ``plotly`` Python package (no CDN, no front-end build). Each is served
with a content hash in its URL and ``Cache-Control: immutable``, gzip-compressed once per process on first
request."""

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

__all__ = ["Asset", "asset_urls", "assets"]

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
