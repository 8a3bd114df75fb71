"""Typed dependencies of the routes: what ``create_app`` put on ``app.state``, and the API-key guard.

``app.state`` holds ``settings``, ``data`` (``GatewayData``), ``metrics``, ``api_keys`` and ``api_limiter``.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from candlecast.config import Settings
from candlecast.gateway.metrics import GatewayMetrics
from candlecast.gateway.reads import GatewayData
from candlecast.gateway.security import ApiKeys, RateLimiter

__all__ = ["API_KEY_HEADER", "DataDep", "MetricsDep", "SettingsDep", "client_address", "require_api_key"]

# Declares the security scheme in the OpenAPI schema (and /docs' "Authorize" button); the check is ours.
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="ApiKey",
    description="A key from gateway.api_keys (CANDLECAST_GATEWAY__API_KEYS, a JSON list).",
    auto_error=False,
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_data(request: Request) -> GatewayData:
    data: GatewayData = request.app.state.data
    return data


def get_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
DataDep = Annotated[GatewayData, Depends(get_data)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def require_api_key(request: Request, presented: Annotated[str | None, Security(API_KEY_HEADER)]) -> None:
    """Per-address limit first (so guessing keys is limited too), then the key, then the per-key limit;
    raises ``AccessDenied`` (401/403/429)."""
    keys: ApiKeys = request.app.state.api_keys
    limiter: RateLimiter = request.app.state.api_limiter
    if denied := limiter.take("addr:" + client_address(request)):
        raise denied
    if denied := keys.check(presented):
        raise denied
    assert presented is not None
    if denied := limiter.take("key:" + hashlib.sha256(presented.encode()).hexdigest()[:24]):
        raise denied
