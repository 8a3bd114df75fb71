"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) on the gateway's OpenAPI schema, with their scripts and styles
served by the gateway itself (``assets.doc_assets``, from the ``fastapi-offline`` package) instead of a CDN, so
they work offline and behind firewalls."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from candlecast.gateway.pages.assets import doc_asset_urls

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _openapi_url(request: Request) -> str:
    return request.scope.get("root_path", "") + (request.app.openapi_url or "/openapi.json")


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    urls = doc_asset_urls()
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} · API",
        swagger_js_url=urls["swagger-ui-bundle.js"],
        swagger_css_url=urls["swagger-ui.css"],
        swagger_favicon_url=urls["favicon.png"],
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    urls = doc_asset_urls()
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} · API reference",
        redoc_js_url=urls["redoc.standalone.js"],
        redoc_favicon_url=urls["favicon.png"],
        with_google_fonts=False,
    )
