"""A small typed client of the inference service, for the batch jobs and anyone else.

``InferenceClient(url, token).forecast(series, model=..., pred_len=...)`` sends ``SeriesInput``s to
``POST /v1/forecast`` and returns ``Forecast`` objects, the same type the models return in-process.
Connection errors and 502/503/504 answers are retried with exponential backoff; a model the service reports
unavailable and every 4xx are not (retrying cannot fix them).

Errors are the ``InferenceError`` branch of ``candlecast.errors`` (re-exported here)::

    InferenceError                  base class (an ``UpstreamError``)
    ├── InferenceRequestError       4xx: the request is wrong (``status``, ``detail``, ``errors``)
    ├── InferenceModelUnavailable   503 model_unavailable: the model did not load (``detail`` says why)
    └── InferenceServerError        5xx after the retries, or the service unreachable (``status`` None)

Importing this module loads no server code: no FastAPI, no model registry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pandas as pd

from candlecast.errors import InferenceError, InferenceModelUnavailable, InferenceRequestError, InferenceServerError
from candlecast.models.base import Forecast, SeriesInput

__all__ = [
    "InferenceClient",
    "InferenceError",
    "InferenceModelUnavailable",
    "InferenceRequestError",
    "InferenceServerError",
]

_RETRY_STATUSES = frozenset({502, 503, 504})


class InferenceClient:
    """HTTP client of the inference service (thread-safe; reuse one instance, close it when done)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def forecast(
        self,
        series: Sequence[SeriesInput],
        model: str | None = None,
        pred_len: int = 24,
        sample_count: int | None = None,
        seed: int | Sequence[int] | None = None,
        quantile_levels: Sequence[float] | None = None,
        include_ohlc: bool = False,
    ) -> list[Forecast]:
        """One ``Forecast`` per series, in order (``POST /v1/forecast``; model None = the service default).

        ``seed``: one int for the request (series i gets ``derive_seed(seed, i)``) or one per series.
        """
        body: dict[str, Any] = {
            "series": [_series_json(s) for s in series],
            "pred_len": pred_len,
            "model": model,
            "sample_count": sample_count,
            "seed": seed if seed is None or isinstance(seed, int) else list(seed),
            "quantile_levels": None if quantile_levels is None else list(quantile_levels),
            "include_samples": True,
            "include_ohlc": include_ohlc,
        }
        answer = self._request("POST", "/v1/forecast", json={k: v for k, v in body.items() if v is not None})
        return [_forecast(f, answer["model_name"], answer["model_version"]) for f in answer["forecasts"]]

    def health(self) -> dict[str, Any]:
        """``GET /health`` (a 503 "down" answer is returned, not raised)."""
        response = self._send("GET", "/health", retry_statuses=frozenset({502, 504}))
        return response.json()

    def models(self) -> dict[str, Any]:
        return self._request("GET", "/models")

    def reload_adapters(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make the service load the promoted fine-tune adapters again (``POST /admin/reload-adapters``): those
        of ``manifest`` (the content of ``promoted.json``) when given, else those of its own manifest file.
        Answers as ``GET /models``."""
        return self._request("POST", "/admin/reload-adapters", **({} if manifest is None else {"json": manifest}))

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._send(method, path, **kwargs)
        return response.json()

    def _send(
        self, method: str, path: str, retry_statuses: frozenset[int] = _RETRY_STATUSES, **kwargs: Any
    ) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                last = InferenceServerError(f"{method} {path}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code < 400 or (path == "/health" and response.status_code == 503):
                return response
            error = _error_from(method, path, response)
            if isinstance(error, InferenceServerError) and response.status_code in retry_statuses:
                last = error
                continue
            raise error
        assert last is not None
        raise last


def _error_from(method: str, path: str, response: httpx.Response) -> InferenceError:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    detail = str(body.get("detail", "")) if isinstance(body, dict) else str(body)
    errors = body.get("errors", []) if isinstance(body, dict) else []
    code = body.get("error") if isinstance(body, dict) else None
    message = f"{method} {path} -> {response.status_code}: {detail}"
    if code == "model_unavailable":
        return InferenceModelUnavailable(message, response.status_code, detail, errors)
    if response.status_code < 500:
        return InferenceRequestError(message, response.status_code, detail, errors)
    return InferenceServerError(message, response.status_code, detail, errors)


def _json_number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _series_json(s: SeriesInput) -> dict[str, Any]:
    rows = [[_json_number(x) for x in row] for row in s.ohlcv.tolist()]
    body: dict[str, Any] = {
        "symbol": s.symbol,
        "timeframe": s.timeframe,
        "calendar": s.calendar,
        "asset_class": s.asset_class,
        "timestamps": [t.isoformat() for t in s.timestamps],
        "ohlcv": rows,
    }
    if s.events is not None:
        body["events"] = s.events.tolist()
    if s.future_events is not None:
        body["future_events"] = s.future_events.tolist()
    return body


def _forecast(f: dict[str, Any], model_name: str, model_version: str) -> Forecast:
    ohlc = f.get("ohlc_samples")
    return Forecast(
        symbol=f["symbol"],
        timeframe=f["timeframe"],
        model_name=model_name,
        model_version=model_version,
        target_timestamps=pd.DatetimeIndex(pd.to_datetime(f["target_timestamps"], utc=True)),
        samples=np.asarray(f["samples"] if f.get("samples") is not None else np.empty((0, 0)), dtype=np.float64),
        quantile_levels=tuple(f["quantile_levels"]),
        quantiles=np.asarray(f["quantiles"], dtype=np.float64),
        last_close=float(f["last_close"]),
        ohlc_samples=None if ohlc is None else np.asarray(ohlc, dtype=np.float64),
        seed=f.get("seed"),
        provenance=f.get("provenance"),
    )
