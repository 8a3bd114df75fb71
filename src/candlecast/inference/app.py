"""The inference HTTP service: FastAPI app factory and ``serve``.

Routes: ``POST /predict`` (one series, the original shape), ``POST /v1/forecast`` (many series),
``GET /health``, ``GET /models`` and ``GET /metrics`` (Prometheus). Models are loaded once at start-up by the
registry; validated requests go to an ``Engine``: by default each model's micro-batching queue
(``batching.QueueEngine``), under Ray Serve its ``@serve.batch`` queue (``ray_engine.py``, the same app).

Errors are JSON ``{"error": code, "detail": message, "errors": [{"field", "message"}]}``:
401/403 for a missing/wrong bearer token (when ``settings.inference.token`` is set; ``/health`` stays open),
413 for a body over ``max_body_bytes``, 422 for bad input (each error names its field; a request whose
series × pred_len × sample_count is over ``max_request_values`` is bad input), 503 for an unavailable model or a
full queue, 504 when a request exceeds ``request_timeout_s``. A client that disconnects has its queued work
dropped. Each request is logged as one JSON line.

``serve`` refuses to listen on a non-loopback address without ``inference.token`` and warns when it runs open
on loopback (``check_exposure``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from candlecast.config import Settings, get_settings, is_loopback
from candlecast.errors import CandlecastError, InputError, ModelUnavailableError, OverloadedError, http_status
from candlecast.inference.batching import Job, QueueEngine
from candlecast.inference.metrics import ServiceMetrics
from candlecast.inference.schemas import (
    ErrorBody,
    ForecastRequest,
    ForecastResponse,
    HealthResponse,
    ModelDescription,
    ModelsResponse,
    ModelStatus,
    PredictRequest,
    PredictResponse,
    RequestInvalid,
    SeriesPayload,
    check_request,
    series_forecast,
    to_series_inputs,
)
from candlecast.models import calendars
from candlecast.models.base import Forecast, series_seeds
from candlecast.models.registry import Registry, UnknownModelError

__all__ = ["Engine", "check_exposure", "create_app", "serve"]

log = logging.getLogger("candlecast.inference")

_ROUTES = ("/predict", "/v1/forecast", "/health", "/models", "/metrics")
_OPEN_PATHS = frozenset({"/health"})
_P10_P50_P90 = (0.1, 0.5, 0.9)


class _ClientGone(CandlecastError):
    """The client disconnected before its forecast was ready (logged as 499)."""


class _Timeout(CandlecastError):
    """The forecast did not finish within ``request_timeout_s`` (504)."""


class Engine(Protocol):
    """Where validated forecast requests run: the plain engine's queues or Ray Serve's batching."""

    async def start(self, registry: Registry, metrics: ServiceMetrics) -> None:
        """Called once the registry is loaded, in the app's event loop."""
        ...

    def submit(self, model: str, job: Job) -> asyncio.Future[list[Forecast]]:
        """Queue one request's series (``job``) for a loaded model; cancelling the future drops the work if not
        begun. May raise ``OverloadedError`` (503)."""
        ...

    async def stop(self) -> None: ...


@dataclass
class _Service:
    settings: Settings
    metrics: ServiceMetrics
    engine: Engine
    registry: Registry | None = None


def create_app(settings: Settings, registry: Registry | None = None, engine: Engine | None = None) -> FastAPI:
    """The inference app. Models are loaded at start-up from ``settings`` unless a loaded ``registry`` is given;
    requests run on ``engine`` (default: the plain engine, a micro-batching queue per model)."""
    cfg = settings.inference
    service = _Service(settings, ServiceMetrics(), engine or QueueEngine(cfg), registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service.registry is None:
            service.registry = await asyncio.to_thread(Registry.from_settings, settings)
        await asyncio.to_thread(calendars.warm_up)
        await service.engine.start(service.registry, service.metrics)
        try:
            yield
        finally:
            await service.engine.stop()

    app = FastAPI(
        title="candlecast inference",
        summary="Probabilistic forecasts of market candles: quantiles and sample paths.",
        lifespan=lifespan,
    )
    app.state.service = service
    # The body limit is the guard's (not FastAPI's max_body_size, whose 413 is plain text): JSON like every error.
    app.add_middleware(_Guard, token=cfg.token, metrics=service.metrics, max_body_bytes=cfg.max_body_bytes)
    _add_error_handlers(app)

    @app.post("/predict", response_model=PredictResponse, responses=_ERROR_RESPONSES)
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:
        """Forecast one series (the original request shape); p10/p50/p90 and sampled closes."""
        name, forecasts = await _forecast(
            request,
            service,
            [body.series_payload()],
            prefix="",
            model=body.model,
            pred_len=body.pred_len,
            sample_count=body.sample_count,
            quantile_levels=_P10_P50_P90,
            seed=body.seed,
        )
        f = forecasts[0]
        return PredictResponse(
            p10=f.p10.tolist(),
            p50=f.p50.tolist(),
            p90=f.p90.tolist(),
            samples=f.samples.tolist(),
            target_timestamps=list(f.target_timestamps.to_pydatetime()),
            model_name=f.model_name,
            model_version=f.model_version,
            last_close=f.last_close,
        )

    @app.post("/v1/forecast", response_model=ForecastResponse, responses=_ERROR_RESPONSES)
    async def forecast(body: ForecastRequest, request: Request) -> ForecastResponse:
        """Forecast many series with one model: quantiles at the requested levels and sample paths."""
        name, forecasts = await _forecast(
            request,
            service,
            body.series,
            prefix="series",
            model=body.model,
            pred_len=body.pred_len,
            sample_count=body.sample_count,
            quantile_levels=body.quantile_levels,
            seed=body.seed,
            include_ohlc=body.include_ohlc,
        )
        levels = body.quantile_levels or settings.inference.default_quantile_levels
        return ForecastResponse(
            model_name=name,
            model_version=forecasts[0].model_version,
            forecasts=[series_forecast(f, levels, body.include_samples, body.include_ohlc) for f in forecasts],
        )

    @app.get("/health", response_model=HealthResponse, responses=_HEALTH_RESPONSES)
    async def health() -> JSONResponse:
        """Per model: loaded or unavailable (with the reason) and device."""
        registry = _registry(service)
        models = {
            e.name: ModelStatus(
                status="loaded" if e.available else "unavailable",
                kind=e.kind,
                device=e.forecaster.device if e.forecaster is not None else None,
                reason=e.reason,
            )
            for e in registry.entries()
        }
        loaded = sum(m.status == "loaded" for m in models.values())
        status = "ok" if loaded == len(models) and loaded else ("degraded" if loaded else "down")
        body = HealthResponse(status=status, models=models)
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if loaded else 503)

    @app.get("/models", response_model=ModelsResponse, responses=_responses(401, 403))
    async def models() -> ModelsResponse:
        """Name, version, context length and parameter count of each configured model."""
        registry = _registry(service)
        out = []
        for e in registry.entries():
            info = e.info()
            out.append(
                ModelDescription(name=e.name, kind=e.kind, available=False, reason=e.reason)
                if info is None
                else ModelDescription(
                    name=e.name,
                    kind=info.kind,
                    available=True,
                    version=info.version,
                    context_length=info.context_length,
                    parameters=info.parameters,
                    device=info.device,
                    gives_ohlc=info.gives_ohlc,
                    gives_samples=info.gives_samples,
                    uses_events=info.uses_events,
                    takes_adapters=info.takes_adapters,
                    min_context=info.min_context,
                    adapters=info.details.get("adapters"),
                    adapters_status=info.details.get("adapters_status"),
                    provenance=info.provenance or None,
                )
            )
        return ModelsResponse(default=registry.default_name(), models=out)

    @app.post("/admin/reload-adapters", response_model=ModelsResponse, responses=_responses(401, 403, 413, 422))
    async def reload_adapters(request: Request) -> ModelsResponse:
        """Load the promoted fine-tune adapters again without a restart: from the manifest sent as the JSON body
        (the content of ``promoted.json``), else from the manifest file; answers as /models. Never reads the
        database."""
        from candlecast.models.finetune.manifest import parse_manifest

        raw = await request.body()
        manifest = None
        if raw.strip():
            try:
                manifest = parse_manifest(json.loads(raw), "body")
            except json.JSONDecodeError as exc:
                raise InputError("body", f"invalid JSON: {exc}") from None
        await asyncio.to_thread(_registry(service).attach_adapters, settings, manifest)
        return await models()

    @app.get("/metrics", response_class=Response, responses={**_METRICS_RESPONSE, **_responses(401, 403)})
    async def metrics() -> Response:
        """Prometheus metrics: requests, latency, batch sizes, queue depth."""
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def serve(settings: Settings | None = None) -> None:
    """Run the service with uvicorn on ``settings.inference.host:port`` (blocks until stopped)."""
    import uvicorn

    settings = settings or get_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    check_exposure(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.inference.host,
        port=settings.inference.port,
        log_level=settings.log_level.lower(),
        access_log=False,  # the app logs one structured line per request
    )


def check_exposure(settings: Settings) -> None:
    """Refuse to serve on a non-loopback address without a bearer token; warn when serving open on loopback.

    Raises ``InputError`` (field ``inference.token``) for an open non-loopback bind, which would let anyone who
    reaches the host run models and reload adapters.
    """
    cfg = settings.inference
    if cfg.token:
        return
    if not is_loopback(cfg.host):
        raise InputError(
            "inference.token",
            f"refusing to listen on {cfg.host}:{cfg.port} without a token: anyone reaching it could run models and "
            "reload adapters; set CANDLECAST_INFERENCE__TOKEN (clients send it as a bearer token) or bind to "
            "127.0.0.1",
        )
    log.warning(
        "the inference service runs without a token on %s:%s: every local process may use it, admin route "
        "included (set CANDLECAST_INFERENCE__TOKEN to require one)",
        cfg.host,
        cfg.port,
    )


def _registry(service: _Service) -> Registry:
    assert service.registry is not None, "the app is used outside its lifespan"
    return service.registry


async def _forecast(
    request: Request,
    service: _Service,
    payloads: Sequence[SeriesPayload],
    *,
    prefix: str,
    model: str | None,
    pred_len: int,
    sample_count: int | None,
    quantile_levels: Sequence[float] | None,
    seed: int | Sequence[int] | None,
    include_ohlc: bool = False,
) -> tuple[str, list[Forecast]]:
    """Validate, queue and await one request; returns the model name and one forecast per series."""
    registry = _registry(service)
    settings = service.settings
    name = model or registry.default_name()
    request.state.log = {"model": name, "series": len(payloads), "pred_len": pred_len}
    errors: list[tuple[str, str]] = []
    if name is None:
        raise ModelUnavailableError("(default)", "no model is loaded")
    try:
        registry.entry(name)
    except UnknownModelError as exc:
        errors.append(("model", exc.message))  # reported with the other field errors (422)
    try:
        count, levels = check_request(
            settings,
            pred_len=pred_len,
            sample_count=sample_count,
            quantile_levels=quantile_levels,
            seed=seed,
            n_series=len(payloads),
            include_ohlc=include_ohlc,
        )
    except RequestInvalid as exc:
        errors.extend(exc.errors)
    try:
        series = to_series_inputs(payloads, settings, prefix)
    except RequestInvalid as exc:
        errors.extend(exc.errors)
    if errors:
        raise RequestInvalid(errors)
    registry.get(name)  # ModelUnavailableError -> 503
    seeds = series_seeds(seed, len(series))
    job = Job(series=series, seeds=seeds, pred_len=pred_len, sample_count=count, levels=levels)
    future = service.engine.submit(name, job)
    try:
        forecasts = await _await_job(request, future, settings.inference.request_timeout_s)
    except InputError as exc:  # the model's own checks name fields "series[i]...."; /predict has no list
        if not prefix and exc.field.startswith("series[0]"):
            raise InputError(exc.field.removeprefix("series[0]").lstrip(".") or "ohlcv", exc.message) from None
        raise
    for i, f in enumerate(forecasts):
        if not (np.isfinite(f.samples).all() and np.isfinite(f.quantiles).all()):
            raise InputError(f"{prefix}[{i}]" if prefix else "ohlcv", "the model produced non-finite values")
    return name, forecasts


async def _await_job(request: Request, future: asyncio.Future[list[Forecast]], timeout: float) -> list[Forecast]:
    """Wait for the job, the client's disconnect or the timeout, whichever comes first."""
    gone = asyncio.create_task(_client_disconnect(request))
    waiting: set[asyncio.Future[Any]] = {future, gone}
    try:
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not future.done():
            future.cancel()  # the batcher skips cancelled jobs
    if future in done:
        return future.result()
    if gone in done:
        raise _ClientGone
    raise _Timeout


async def _client_disconnect(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


_ERROR_TEXT: dict[int, str] = {
    401: "missing bearer token (when the service has one)",
    403: "wrong bearer token",
    413: "body over max_body_bytes",
    422: "invalid input, or more work than max_request_values; each error names its field",
    503: "model unavailable or queue full",
    504: "request timed out",
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error answers a route gives: each one an ``ErrorBody``."""
    return {code: {"model": ErrorBody, "description": _ERROR_TEXT[code]} for code in codes}


_ERROR_RESPONSES = _responses(401, 403, 413, 422, 503, 504)
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthResponse, "description": "no model is loaded (status down)"}
}
_METRICS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
}


def _error(
    status: int,
    code: str,
    detail: str,
    errors: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": code, "detail": detail, "errors": [{"field": f, "message": m} for f, m in errors or []]}
    return JSONResponse(body, status_code=status, headers=headers)


def _error_response(exc: CandlecastError) -> JSONResponse:
    """The JSON answer of one error; the status comes from ``errors.http_status`` (except the two below)."""
    if isinstance(exc, _Timeout):
        return _error(504, "timeout", "the forecast did not finish within the request timeout")
    if isinstance(exc, _ClientGone):
        return _error(499, "client_closed_request", "the client disconnected")
    status = http_status(exc)
    if isinstance(exc, RequestInvalid):
        return _error(status, "invalid_request", str(exc), exc.errors)
    if isinstance(exc, InputError):
        return _error(status, "invalid_request", str(exc), [(exc.field, exc.message)])
    if isinstance(exc, ModelUnavailableError):
        return _error(status, "model_unavailable", str(exc))
    if isinstance(exc, OverloadedError):
        return _error(status, "overloaded", str(exc), headers={"Retry-After": "1"})
    return _error(status, "error", str(exc))


def _field_name(loc: Sequence[Any]) -> str:
    """("body", "series", 0, "ohlcv", 3) -> "series[0].ohlcv[3]"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            if e.get("type") == "json_invalid":
                errors.append(("body", f"invalid JSON: {e.get('ctx', {}).get('error', 'decode error')}"))
            else:
                errors.append((_field_name(e.get("loc", ())), str(e.get("msg", "invalid"))))
        return _error(422, "invalid_request", "; ".join(f"{f}: {m}" for f, m in errors), errors)

    @app.exception_handler(CandlecastError)
    async def candlecast_error(request: Request, exc: CandlecastError) -> JSONResponse:
        """Every error of the tree, answered with its status from ``errors.http_status``."""
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8): bad input like bad JSON
            return _error(422, "invalid_request", f"body: {exc.detail}", [("body", "could not be parsed as JSON")])
        code = "body_too_large" if exc.status_code == 413 else "http_error"
        return _error(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return _error(500, "internal_error", "internal error (logged by the service)")


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit} bytes (inference.max_body_bytes)"


class _Guard:
    """Pure ASGI middleware: bearer-token check before the body is read, the body limit (a Content-Length over it
    is refused before reading; a longer chunked body when reading reaches it), metrics, one log line per
    request."""

    def __init__(self, app: ASGIApp, token: str | None, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = scope.get("path", "")

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:  # answered as JSON by the app's HTTPException handler
                    raise StarletteHTTPException(413, _too_large(self.max_body_bytes))
            return message

        try:
            denied = self._deny(scope) if self.token and path not in _OPEN_PATHS else None
            if denied is None:
                denied = self._too_long(scope)
            if denied is not None:
                await denied(scope, receive, send_and_record)
            else:
                await self.app(scope, receive_within_limit, send_and_record)
        except StarletteHTTPException as exc:  # e.g. the body limit, answered by an outer middleware
            status = exc.status_code
            raise
        finally:
            seconds = time.perf_counter() - started
            route = path if path in _ROUTES else "other"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            extra = scope.get("state", {}).get("log", {})
            log.info(
                json.dumps(
                    {
                        "event": "request",
                        "method": scope.get("method"),
                        "path": path,
                        "status": status,
                        **extra,
                        "ms": round(seconds * 1000, 1),
                    }
                )
            )

    def _too_long(self, scope: Scope) -> JSONResponse | None:
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return _error(413, "body_too_large", _too_large(self.max_body_bytes))
        return None

    def _deny(self, scope: Scope) -> JSONResponse | None:
        assert self.token is not None
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _error(
                401,
                "unauthorized",
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self.token):
            return _error(403, "forbidden", "the bearer token is not valid")
        return None
