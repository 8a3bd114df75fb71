"""The newest stored forecast of a series: the public showcase payload and the keyed ``/api/v1/predictions``
one (the showcase fields plus model version, event context, optionally sample paths and recent candles)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from candlecast.errors import NotFoundError
from candlecast.gateway.params import ForecastParams, PredictionParams
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import candles_payload, floats, showcase_fields
from candlecast.store.candles import latest_candles
from candlecast.store.predictions import Prediction, latest_prediction
from candlecast.store.status import forecast_slots, instrument_exists

__all__ = ["prediction_payload", "showcase_payload"]


def _newest(engine: Engine, symbol: str, model: str, timeframe: str, with_samples: bool = False) -> Prediction:
    p = latest_prediction(engine, symbol, model, timeframe, with_samples=with_samples)
    if p is not None:
        return p
    if not instrument_exists(engine, symbol):
        raise NotFoundError("symbol", f"unknown symbol {symbol!r}")
    available = [{"model_name": s.model_name, "timeframe": s.timeframe} for s in forecast_slots(engine, symbol)]
    raise NotFoundError("model_name", f"no {timeframe} forecast of {symbol} by model {model!r}", available)


def showcase_payload(engine: Engine, params: ForecastParams) -> Payload:
    p = _newest(engine, params.symbol, params.model, params.timeframe)
    return {**showcase_fields(p), "stale": False}


def prediction_payload(engine: Engine, params: PredictionParams) -> Payload:
    p = _newest(engine, params.symbol, params.model, params.timeframe, with_samples=params.samples)
    payload: Payload = {
        **showcase_fields(p),
        "model_version": p.model_version,
        "pred_len": p.pred_len,
        "event_context": p.event_context,
    }
    if params.samples:
        payload["samples"] = None if p.samples is None else [floats(path) for path in p.samples]
    if params.history:
        frame = latest_candles(engine, params.symbol, params.timeframe, params.history, as_of=p.as_of)
        payload["history"] = candles_payload(frame, ("open", "high", "low", "close", "volume"))
    payload["stale"] = False
    return payload
