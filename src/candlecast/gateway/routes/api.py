"""The keyed ``/api/v1`` reads (``X-API-Key``, rate limited per address and per key).

Every answer is a cached read served with its ETag (304 on a matching ``If-None-Match``) and
``Cache-Control: private``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from candlecast.gateway.responses import served_response
from candlecast.gateway.routes.deps import DataDep, require_api_key

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_api_key)], tags=["api (X-API-Key)"])


@router.get("/predictions/{symbol}")
async def prediction(
    request: Request,
    data: DataDep,
    symbol: str,
    model_name: str | None = None,
    timeframe: str | None = None,
    samples: Annotated[bool, Query(description="include the sampled paths (sample_count x pred_len)")] = False,
    history: Annotated[int, Query(description="include this many candles that had closed by as_of")] = 0,
) -> Response:
    """The newest forecast with model version and event context; optionally sample paths and candles."""
    served = await data.prediction(symbol, model_name, timeframe, samples, history)
    return served_response(request, served, private=True)


@router.get("/instruments")
async def instruments(request: Request, data: DataDep) -> Response:
    """Every instrument: asset class, candle counts and ranges, and which forecasts exist."""
    return served_response(request, await data.instruments(), private=True)


@router.get("/performance")
async def performance(
    request: Request,
    data: DataDep,
    symbol: str | None = None,
    model_name: str | None = None,
    timeframe: str | None = None,
    window: Annotated[str, Query(description="all or trailing_30d")] = "all",
) -> Response:
    """Scores per (symbol, timeframe, model): hit rate, p10-p90 coverage, CRPS, Sharpe; and calibration."""
    served = await data.performance(symbol, model_name, timeframe, window)
    return served_response(request, served, private=True)


@router.get("/jobs")
async def jobs(request: Request, data: DataDep, limit: int = 50) -> Response:
    """Recent job runs, the last run of each job, and the freshness of candles and forecasts."""
    return served_response(request, await data.jobs(limit), private=True)
