"""``/health`` and ``/metrics``: for load balancers, monitoring and people on call."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from candlecast.gateway.routes.deps import DataDep, MetricsDep
from candlecast.gateway.schemas import Health, ok

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/health", responses=ok(Health, "The gateway's state (always 200 while it serves)."))
async def health(data: DataDep) -> JSONResponse:
    """Database and LISTEN state, cache size, last job runs, age of the newest forecast per timeframe.

    Always 200 while the process serves: with the database down the gateway still answers from its
    cache, so ``status`` says "degraded" and ``database.up`` is false.
    """
    _, report = await data.health()
    return JSONResponse(report, headers={"cache-control": "no-store"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {}}}},
)
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    """Prometheus text format: requests and latency by route family, cache, database and listener state."""
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
