"""The keyed ``/api/v1`` reads (``X-API-Key``, rate limited per address and per key).

Every answer is a cached read served with its ETag (304 on a matching ``If-None-Match``) and
``Cache-Control: private``. The OpenAPI schema declares the key (security scheme ``ApiKey``), the answer models
(``schemas.py``) and the error answers.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from candlecast.gateway.cache import dump_json
from candlecast.gateway.params import EVERY_SYMBOL, PATH_QUESTIONS, PATH_SIDES
from candlecast.gateway.responses import served_response
from candlecast.gateway.routes.deps import DataDep, require_api_key
from candlecast.gateway.routes.showcase import MODEL_QUERY, TIMEFRAME_QUERY
from candlecast.gateway.schemas import (
    PATH_QUESTION_RULES,
    Instruments,
    Jobs,
    PathAnswer,
    Performance,
    PredictionDetail,
    error_responses,
    ok,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_api_key)],
    tags=["api (X-API-Key)"],
    responses=error_responses(401, 403, 429, 503),
)


@router.get(
    "/predictions/{symbol}",
    responses={**ok(PredictionDetail, "The newest forecast, with its details."), **error_responses(404, 422)},
)
async def prediction(
    request: Request,
    data: DataDep,
    symbol: str,
    model_name: Annotated[str | None, Query(description=MODEL_QUERY)] = None,
    timeframe: Annotated[str | None, Query(description=TIMEFRAME_QUERY)] = None,
    samples: Annotated[bool, Query(description="Include the sampled paths (sample_count x pred_len).")] = False,
    history: Annotated[int, Query(description="Include this many candles that had closed by as_of (0-2000).")] = 0,
) -> Response:
    """The newest forecast with its track record, model version, horizon and event context; optionally sample
    paths and candles."""
    served = await data.prediction(symbol, model_name, timeframe, samples, history)
    return served_response(request, served, private=True)


@router.get("/instruments", responses=ok(Instruments, "Every instrument."))
async def instruments(request: Request, data: DataDep) -> Response:
    """Every instrument: name, quote currency, asset class, candle counts and ranges, and which forecasts exist."""
    return served_response(request, await data.instruments(), private=True)


@router.get("/performance", responses={**ok(Performance, "Scores and calibration."), **error_responses(404, 422)})
async def performance(
    request: Request,
    data: DataDep,
    symbol: Annotated[
        str | None, Query(description=f"A symbol, or {EVERY_SYMBOL!r} (or leave it out) for every symbol.")
    ] = None,
    model_name: Annotated[str | None, Query(description="Only this model; leave it out for every model.")] = None,
    timeframe: Annotated[str | None, Query(description="1h or 1d; leave it out for both.")] = None,
    window: Annotated[str, Query(description="all (every scored forecast) or trailing_30d.")] = "all",
) -> Response:
    """Scores per (symbol, timeframe, model), all horizon steps together: hit rate, p10-p90 coverage of the served
    band (with its 90% interval) and of the raw band, fair CRPS (also in bp), skill vs a random walk with its
    Diebold-Mariano p-value and the verdict, Sharpe; the evaluation period; and calibration over the same window.
    Asked for one series (symbol, model_name and timeframe), by_step gives its scores per horizon step as well.
    An unknown symbol or model is a 404 listing the available ones."""
    served = await data.performance(symbol, model_name, timeframe, window)
    return served_response(request, served, private=True)


@router.get("/jobs", responses={**ok(Jobs, "Job runs and data freshness."), **error_responses(422)})
async def jobs(
    request: Request, data: DataDep, limit: Annotated[int, Query(description="Runs to list (1-500).")] = 50
) -> Response:
    """Recent job runs, the last run of each job, and the freshness of candles and forecasts."""
    return served_response(request, await data.jobs(limit), private=True)


Question = Literal["touch", "close", "first", "drawdown", "runup"]
Side = Literal["above", "below"]
assert set(get_args(Question)) == set(PATH_QUESTIONS) and set(get_args(Side)) == set(PATH_SIDES)


@router.get(
    "/probability",
    responses={
        **ok(PathAnswer, "The answer, with its Monte-Carlo standard error and the number of paths."),
        **error_responses(404, 422),
    },
)
async def probability(
    request: Request,
    data: DataDep,
    symbol: Annotated[str, Query(description="Ticker, e.g. BTCUSDT.")],
    question: Annotated[Question, Query(description=PATH_QUESTION_RULES)],
    model_name: Annotated[str | None, Query(description=MODEL_QUERY)] = None,
    timeframe: Annotated[str | None, Query(description=TIMEFRAME_QUERY)] = None,
    level: Annotated[
        float | None, Query(description="Price in the quote currency; required for touch, close and first (level A).")
    ] = None,
    level_b: Annotated[float | None, Query(description="Level B of 'first' (e.g. the target), required there.")] = None,
    side: Annotated[
        Side | None,
        Query(description="touch/close: above or below; default: the side `level` lies on from the last close."),
    ] = None,
    steps: Annotated[int | None, Query(description="Forecast candles to cover (default: the whole horizon).")] = None,
    by: Annotated[
        str | None,
        Query(
            description="Instead of steps: an ISO 8601 time (UTC unless an offset is given); the question covers "
            "the forecast candles that close by then (a candle closes one timeframe after its open time)."
        ),
    ] = None,
    max_standard_error: Annotated[
        float | None,
        Query(description="Refuse (422) a probability whose Monte-Carlo standard error is larger (too few paths)."),
    ] = None,
    forecast_id: Annotated[
        int | None, Query(description="Ask a given forecast (an id from an earlier answer) instead of the newest.")
    ] = None,
) -> Response:
    """Ask the sample paths of the newest stored forecast (or of `forecast_id`): the probability of touching a
    level by a time, of closing beyond it, of a stop before a target, or the distribution of the maximum drawdown
    or run-up; each with its Monte-Carlo standard error and the number of paths. Answered from the gateway's cache
    (the paths of the forecast are cached; the question is computed per request)."""
    value = await data.ask_paths(
        symbol, question, model_name, timeframe, forecast_id, level, level_b, side, steps, by, max_standard_error
    )
    return Response(dump_json(value), media_type="application/json", headers={"cache-control": "private, no-cache"})
