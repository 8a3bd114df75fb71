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
from candlecast.gateway.schemas import Forecast, error_responses, ok

__all__ = ["MODEL_QUERY", "SHOWCASE_PREFIX", "TIMEFRAME_QUERY", "router"]

SHOWCASE_PREFIX = "/showcase/ml-prediction/"
MODEL_QUERY = "The model, e.g. baseline or kronos-small; default: the gateway's default_model (baseline)."
TIMEFRAME_QUERY = "1h or 1d; default: the newest timeframe that has a forecast of this symbol by this model."

router = APIRouter(tags=["showcase"])


@router.get(
    SHOWCASE_PREFIX + "{symbol}",
    responses={**ok(Forecast, "The newest forecast."), **error_responses(404, 422, 429, 503)},
)
async def showcase(
    request: Request,
    data: DataDep,
    symbol: str,
    model_name: Annotated[str | None, Query(description=MODEL_QUERY)] = None,
    timeframe: Annotated[str | None, Query(description=TIMEFRAME_QUERY)] = None,
) -> Response:
    """The newest stored forecast of a symbol: p10/p50/p90 of the close per target candle (public, no key), with
    its track record: trailing coverage of the band with its 90% interval, scored forecasts, CRPS skill vs a random
    walk, the Diebold-Mariano p-value and a verdict (edge, no edge, worse than random walk, too few scores; the rule
    is in the TrackRecord schema). Target timestamps are candle open times in UTC; ``data_mode`` says whether it is live
    or a historical replay. 429 only when ``gateway.public_rate_limit_per_minute`` is set."""
    return served_response(request, await data.showcase(symbol, model_name, timeframe))
