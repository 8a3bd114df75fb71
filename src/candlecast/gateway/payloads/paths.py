"""The sample paths of one stored forecast, as a cache entry that path questions are answered from
(``questions.py``): the newest forecast of a (symbol, model, timeframe), or a given forecast id.

The paths travel inside the JSON-ready payload as base64 of little-endian float32 (``encode_paths``), so the entry
is cheap to serialise, survives cache snapshots like any other, and decodes to numpy arrays once per entry
(``questions.entry_arrays`` memoises them on the entry). ``samples_high``/``samples_low`` are present for models
that give OHLC paths (``basis`` "high/low"); a forecast stored without paths is a 404.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.errors import NotFoundError
from candlecast.gateway.params import ForecastParams, PathsParams
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import data_status, instrument_label, iso
from candlecast.gateway.payloads.forecasts import newest_prediction, unknown_symbol
from candlecast.store.candles import get_instruments, timeframe_delta
from candlecast.store.predictions import Prediction, get_prediction

__all__ = ["decode_paths", "encode_paths", "paths_payload"]


def encode_paths(values: np.ndarray | None) -> dict[str, Any] | None:
    """A (paths, steps) array as JSON: its shape and the base64 of its little-endian float32 values."""
    if values is None:
        return None
    array = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(array.shape), "f4": base64.b64encode(array.tobytes()).decode()}


def decode_paths(encoded: dict[str, Any] | None) -> np.ndarray | None:
    """The float64 array ``encode_paths`` encoded."""
    if encoded is None:
        return None
    raw = np.frombuffer(base64.b64decode(encoded["f4"]), dtype="<f4")
    return raw.reshape(encoded["shape"]).astype(np.float64)


def _by_id(engine: Engine, params: PathsParams) -> Prediction:
    assert params.forecast_id is not None
    p = get_prediction(engine, params.forecast_id, with_samples=True)
    if p is None or p.symbol != params.symbol:
        where = "" if p is None else f" of {params.symbol} (it is a forecast of {p.symbol})"
        raise NotFoundError("forecast_id", f"no forecast {params.forecast_id}{where}", None)
    for field, asked, found in (("model_name", params.model, p.model_name), ("timeframe", params.timeframe,
                                                                               p.timeframe)):  # fmt: skip
        if asked is not None and asked != found:
            raise NotFoundError(field, f"forecast {p.id} is by {p.model_name} at {p.timeframe}, not {asked}", None)
    return p


def paths_payload(engine: Engine, params: PathsParams, gw: GatewaySettings) -> Payload:
    if params.forecast_id is None:
        assert params.model is not None
        p, instrument = newest_prediction(
            engine, ForecastParams(params.symbol, params.model, params.timeframe), gw, True
        )
    else:
        found = get_instruments(engine, [params.symbol])
        if not found:
            raise unknown_symbol(engine, params.symbol)
        p, instrument = _by_id(engine, params), found[0]
    if p.samples is None and p.samples_dropped_at is not None:
        raise NotFoundError(
            "samples",
            f"forecast {p.id} of {p.symbol} by {p.model_name}: samples dropped by retention on "
            f"{p.samples_dropped_at:%Y-%m-%d} (store.keep_samples_days); its quantiles and scores are kept",
            None,
        )
    if p.samples is None or p.samples.shape[0] == 0:
        raise NotFoundError("samples", f"forecast {p.id} of {p.symbol} by {p.model_name} stored no sample paths", None)
    extremes = p.samples_high is not None and p.samples_low is not None
    step = timeframe_delta(p.timeframe)
    return {
        "symbol": p.symbol,
        **instrument_label(instrument),
        "model_name": p.model_name,
        "timeframe": p.timeframe,
        "forecast_id": p.id,
        "generated_at": iso(p.generated_at),
        "as_of": iso(p.as_of),
        "target_timestamps": [iso(ts) for ts in p.target_ts],
        "close_times": [iso(ts + step) for ts in p.target_ts],
        "last_close": float(p.last_close),
        "basis": "high/low" if extremes else "close",
        "samples": encode_paths(p.samples),
        "samples_high": encode_paths(p.samples_high) if extremes else None,
        "samples_low": encode_paths(p.samples_low) if extremes else None,
        **data_status(p.as_of, gw.replay_after_h),
        "stale": False,
    }
