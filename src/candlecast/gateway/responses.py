"""HTTP answers: a cached read as a response (ETag, Cache-Control, 304), and errors as responses.

Errors are ``candlecast.errors`` exceptions; ``error_response`` is the one place they become HTTP answers:
the status from ``errors.http_status``, a JSON body from ``error_payload`` and the headers the error asks
for. The app's exception handler, the plain ASGI layers in front of FastAPI and the MCP guard all use it,
and the read policy caches a ``NotFoundError`` as the same 404 body.

Bodies: ``{"detail": ...}``; an ``InputError`` adds the ``field`` (its detail starts with that field's
name); a ``NotFoundError`` gives its message and, where known, the ``available`` alternatives.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from candlecast.errors import AccessDenied, CandlecastError, InputError, NotFoundError, UnavailableError, http_status
from candlecast.gateway.cache import Served

__all__ = ["error_detail", "error_payload", "error_response", "etag_matches", "served_response"]


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Weak comparison, as If-None-Match asks (RFC 9110 13.1.2)."""
    if if_none_match.strip() == b"*":
        return True
    bare = etag.removeprefix(b"W/")
    return any(tag.strip().removeprefix(b"W/") == bare for tag in if_none_match.split(b","))


def served_response(request: Request, served: Served, private: bool = False) -> Response:
    """The cached answer, or 304 when the request's If-None-Match matches; ``private`` for keyed answers."""
    etag = served.etag
    cache_control = served.cache_control
    if private:
        cache_control = cache_control.replace(b"public", b"private")
    headers = {"etag": etag.decode(), "cache-control": cache_control.decode()}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match.encode(), etag):
        return Response(status_code=304, headers=headers)
    return Response(served.body, status_code=served.status, media_type="application/json", headers=headers)


def error_detail(exc: CandlecastError) -> str:
    """What the error says to the client (HTTP ``detail``, MCP tool error text)."""
    if isinstance(exc, NotFoundError):
        return exc.message  # "unknown symbol 'X'": the field is in the sentence already
    if isinstance(exc, AccessDenied):
        return exc.detail
    return str(exc)


def error_payload(exc: CandlecastError) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": error_detail(exc)}
    if isinstance(exc, NotFoundError):
        if exc.available is not None:
            body["available"] = exc.available
    elif isinstance(exc, InputError):
        body["field"] = exc.field
    return body


def error_response(exc: CandlecastError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, AccessDenied):
        headers.update(exc.headers)
    elif isinstance(exc, UnavailableError):
        headers["retry-after"] = "1"
    return JSONResponse(error_payload(exc), status_code=http_status(exc), headers=headers)
