"""The public showcase route: the newest stored forecast of a symbol, no key needed.

Its fresh cache hits are answered before FastAPI by ``middleware.ShowcaseFastPath``; this route is the full
implementation (misses, stale entries, malformed requests).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from candlecast.gateway.responses import served_response
from candlecast.gateway.routes.deps import DataDep

__all__ = ["SHOWCASE_PREFIX", "router"]

SHOWCASE_PREFIX = "/showcase/ml-prediction/"

router = APIRouter(tags=["showcase"])


@router.get(SHOWCASE_PREFIX + "{symbol}")
async def showcase(
    request: Request,
    data: DataDep,
    symbol: str,
    model_name: Annotated[str | None, Query(description="default: the gateway's default model")] = None,
    timeframe: Annotated[str | None, Query(description="1h or 1d; default: the gateway's default")] = None,
) -> Response:
    """The newest stored forecast of a symbol: p10/p50/p90 per target timestamp (public, no key)."""
    return served_response(request, await data.showcase(symbol, model_name, timeframe))
