"""``/health`` and ``/metrics``: for load balancers, monitoring and people on call.

``/metrics`` answers as ``gateway.metrics_access`` says: only to loopback peers (the default), to API-key
holders, or to anyone; refused, it is a 404 (loopback) or the API-key refusal (key).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from candlecast.config import is_loopback
from candlecast.errors import NotFoundError
from candlecast.gateway.routes.deps import DataDep, MetricsDep, SettingsDep, client_address
from candlecast.gateway.schemas import Health, ok
from candlecast.gateway.security import ApiKeys

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
async def prometheus_metrics(request: Request, metrics: MetricsDep, settings: SettingsDep) -> Response:
    """Prometheus text format: requests and latency by route family, cache, database and listener state.

    Open only to loopback clients unless ``gateway.metrics_access`` says otherwise."""
    access = settings.gateway.metrics_access
    if access == "loopback" and not is_loopback(client_address(request)):
        raise NotFoundError("path", "not found")
    if access == "key":
        keys: ApiKeys = request.app.state.api_keys
        if denied := keys.check(request.headers.get("x-api-key")):
            raise denied
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
