"""The newest stored forecast of a series: the public showcase payload and the keyed ``/api/v1/predictions``
one (the showcase fields plus model version, horizon, event context, optionally sample paths and recent candles).
Both carry the series' track record (``payloads.track``).

Without a timeframe the newest timeframe that has a forecast of the symbol by the model is served
(``resolve_timeframe``): the timeframe whose newest forecast has the latest ``as_of``, the gateway's
``default_timeframe`` on a tie. What does not exist is a ``NotFoundError`` listing what does: the instruments for
an unknown symbol, the (model, timeframe) forecasts of the symbol otherwise; a symbol without any forecast also
says why (``no_forecast_reason``).

Why an instrument has no forecast of a timeframe is read from the store: no candles; no forecast of that timeframe
at all yet; its candles end before (or start after) the stretch the stored forecasts cover, which in a replay
means it can never get one; or none yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.errors import NotFoundError
from candlecast.gateway.params import ForecastParams, PredictionParams
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import (
    candles_payload,
    data_status,
    instrument_label,
    price_decimals,
    prices,
    showcase_fields,
    zulu,
)
from candlecast.gateway.payloads.track import read_track_record
from candlecast.store.candles import Instrument, get_instruments, latest_candles, timeframe_delta
from candlecast.store.predictions import Prediction, latest_prediction
from candlecast.store.schema import TIMEFRAMES
from candlecast.store.status import (
    CandleSpan,
    ForecastSlot,
    ForecastWindow,
    candle_spans,
    forecast_slots,
    forecast_window,
)

__all__ = [
    "forecast_payload",
    "newest_prediction",
    "no_forecast_reason",
    "prediction_payload",
    "resolve_timeframe",
    "showcase_payload",
    "unknown_symbol",
]


def _when(ts: datetime, timeframe: str) -> str:
    return f"{ts:%Y-%m-%d}" if timeframe == "1d" else f"{ts:%Y-%m-%d %H:%M} UTC"


def no_forecast_reason(timeframe: str, span: CandleSpan | None, window: ForecastWindow | None) -> str:
    """Why a symbol whose candles span ``span`` has no ``timeframe`` forecast, given the stretch of ``as_of``
    times the stored forecasts of that timeframe cover (``window``)."""
    if span is None:
        return f"no {timeframe} candles are stored"
    if window is None:
        return f"no {timeframe} forecast of any instrument has been made yet"
    stretch = f"the stored forecasts are as of {_when(window.first_as_of, timeframe)} → "
    stretch += _when(window.last_as_of, timeframe)
    if span.last + timeframe_delta(timeframe) <= window.first_as_of:
        return f"its {timeframe} candles end {_when(span.last, timeframe)}, before any forecast was made ({stretch})"
    if span.first >= window.last_as_of:
        return f"its {timeframe} candles start {_when(span.first, timeframe)}, after the newest forecast ({stretch})"
    return f"no {timeframe} forecast has been made for it yet ({stretch})"


def unknown_symbol(engine: Engine, symbol: str) -> NotFoundError:
    """The error for a symbol that is not stored, listing those that are."""
    available = [i.symbol for i in get_instruments(engine)]
    return NotFoundError("symbol", f"unknown symbol {symbol!r}", available)


def resolve_timeframe(slots: list[ForecastSlot], model: str, preferred: str) -> str | None:
    """The timeframe whose newest forecast by ``model`` is the newest (``preferred``, then the finer one, on a
    tie); None when ``model`` has no forecast among ``slots``."""
    mine = [s for s in slots if s.model_name == model]
    if not mine:
        return None
    newest = max(s.as_of for s in mine)
    order = [preferred, *TIMEFRAMES]
    return min((s.timeframe for s in mine if s.as_of == newest), key=order.index)


def newest_prediction(
    engine: Engine, params: ForecastParams | PredictionParams, gw: GatewaySettings, with_samples: bool = False
) -> tuple[Prediction, Instrument]:
    """The newest forecast asked for and its instrument, or ``NotFoundError`` saying what exists instead."""
    symbol, model, timeframe = params.symbol, params.model, params.timeframe
    found = get_instruments(engine, [symbol])
    if not found:
        raise unknown_symbol(engine, symbol)
    slots: list[ForecastSlot] | None = None
    if timeframe is None:
        slots = forecast_slots(engine, symbol)
        timeframe = resolve_timeframe(slots, model, gw.default_timeframe)
    p = None if timeframe is None else latest_prediction(engine, symbol, model, timeframe, with_samples=with_samples)
    if p is not None:
        return p, found[0]
    slots = forecast_slots(engine, symbol) if slots is None else slots
    available = [{"model_name": s.model_name, "timeframe": s.timeframe} for s in slots]
    if not slots:  # no forecast at all: say why, per timeframe
        reasons = []
        for tf in TIMEFRAMES:
            span = candle_spans(engine, [symbol], tf).get(symbol)
            reasons.append(f"{tf}: {no_forecast_reason(tf, span, forecast_window(engine, tf))}")
        raise NotFoundError("symbol", f"no forecast of {symbol} is stored; {'; '.join(reasons)}", available)
    if timeframe is None or not any(s.model_name == model for s in slots):
        what = f"{params.timeframe} forecast" if params.timeframe else "forecast"
        raise NotFoundError("model_name", f"no {what} of {symbol} by model {model!r}", available)
    raise NotFoundError("timeframe", f"no {timeframe} forecast of {symbol} by model {model!r}", available)


def provenance_payload(p: Prediction) -> dict[str, Any] | None:
    """The forecast's provenance record (docs/provenance.md) with ``inputs_changed`` always said; None for rows
    written before provenance was recorded."""
    if p.provenance is None:
        return None
    return {**p.provenance, "inputs_changed": bool(p.provenance.get("inputs_changed", False))}


def forecast_payload(p: Prediction, instrument: Instrument | None, replay_after_h: float) -> Payload:
    """The showcase answer of a stored forecast: its fields, the instrument's label, the data status and the
    provenance."""
    fields = showcase_fields(p)
    return {
        "symbol": fields.pop("symbol"),
        **instrument_label(instrument),
        **fields,
        **data_status(p.as_of, replay_after_h),
        "provenance": provenance_payload(p),
    }


def showcase_payload(engine: Engine, params: ForecastParams, gw: GatewaySettings) -> Payload:
    p, instrument = newest_prediction(engine, params, gw)
    track = read_track_record(engine, p.symbol, p.model_name, p.timeframe, gw)
    return {**forecast_payload(p, instrument, gw.replay_after_h), "track_record": track, "stale": False}


def prediction_payload(engine: Engine, params: PredictionParams, gw: GatewaySettings) -> Payload:
    p, instrument = newest_prediction(engine, params, gw, with_samples=params.samples)
    decimals = price_decimals(p.last_close)
    payload: Payload = {
        **forecast_payload(p, instrument, gw.replay_after_h),
        "model_version": p.model_version,
        "pred_len": p.pred_len,
        "event_context": zulu(p.event_context),
        "track_record": read_track_record(engine, p.symbol, p.model_name, p.timeframe, gw),
    }
    if params.samples:
        payload["samples"] = None if p.samples is None else [prices(path, decimals) for path in p.samples]
    if params.history:
        frame = latest_candles(engine, params.symbol, p.timeframe, params.history, as_of=p.as_of)
        payload["history"] = candles_payload(frame, ("open", "high", "low", "close"), decimals, volume=True)
    payload["stale"] = False
    return payload
