"""The data of the web pages: the home grid (one card per active instrument: label, last price and change, a small
fan chart, or why there is no forecast) and the symbol page (every stored forecast series of one symbol with the
candles before it, the realised candles after it and its track record, and the candles of a timeframe without a
forecast with the reason). The evaluation page shows the ``performance`` payload.

Why an instrument has no forecast of a timeframe is ``forecasts.no_forecast_reason``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import (
    candles_payload,
    data_status,
    instrument_label,
    iso,
    price_decimals,
    showcase_fields,
)
from candlecast.gateway.payloads.forecasts import (
    no_forecast_reason,
    provenance_payload,
    resolve_timeframe,
    unknown_symbol,
)
from candlecast.gateway.payloads.track import read_records
from candlecast.store.candles import get_instruments, latest_candles, latest_candles_many, realised_candles
from candlecast.store.predictions import Prediction, latest_prediction, latest_predictions
from candlecast.store.schema import TIMEFRAMES
from candlecast.store.status import (
    candle_spans,
    forecast_slots,
    forecast_window,
    list_active_instruments,
)

__all__ = ["home_payload", "symbol_page_payload"]

_OHLC = ("open", "high", "low", "close")


def _last_price(closes: list[float | None], ts: str | None, decimals: int) -> dict[str, Any] | None:
    """The last close, when it is, and the change from the close before it."""
    known = [c for c in closes if c is not None]
    if not known:
        return None
    last = known[-1]
    if len(known) < 2:
        return {"ts": ts, "close": last, "change": None, "change_pct": None}
    previous = known[-2]
    pct = round((last - previous) / previous * 100, 2) if previous else None
    return {"ts": ts, "close": last, "change": round(last - previous, decimals), "change_pct": pct}


def home_payload(engine: Engine, timeframe: str, gw: GatewaySettings) -> Payload:
    """A card per active instrument: its newest ``timeframe`` forecast (by the default model where there is one,
    else the first model by name) with the ``card_candles`` closes before it, or why there is none."""
    instruments = list_active_instruments(engine)
    by_symbol: dict[str, dict[str, Prediction]] = {}
    for p in latest_predictions(engine, timeframe):
        by_symbol.setdefault(p.symbol, {})[p.model_name] = p
    chosen: dict[str, Prediction] = {}
    for symbol, models in by_symbol.items():
        chosen[symbol] = models.get(gw.default_model) or models[sorted(models)[0]]
    # one candle query per distinct as_of (a replay usually has a single one)
    history: dict[str, pd.DataFrame] = {}
    by_as_of: dict[datetime, list[str]] = {}
    for symbol, p in chosen.items():
        by_as_of.setdefault(p.as_of, []).append(symbol)
    for as_of, symbols in by_as_of.items():
        history.update(latest_candles_many(engine, symbols, timeframe, gw.card_candles, as_of))
    without = [i.symbol for i in instruments if i.symbol not in chosen]
    spans = candle_spans(engine, without, timeframe) if without else {}
    window = forecast_window(engine, timeframe) if without else None
    now = datetime.now(UTC)
    recent = latest_candles_many(engine, without, timeframe, 2, now) if without else {}
    cards = []
    for i in instruments:
        card: dict[str, Any] = {"symbol": i.symbol, **instrument_label(i), "asset_class": i.asset_class}
        shown = chosen.get(i.symbol)
        if shown is not None:
            decimals = price_decimals(shown.last_close)
            frame = history.get(i.symbol)
            closes = candles_payload(frame, ("close",), decimals)
            card["last"] = _last_price(closes["close"], closes["ts"][-1] if closes["ts"] else None, decimals)
            card["forecast"] = {**showcase_fields(shown, decimals), "models": sorted(by_symbol[i.symbol]),
                                "history": closes}  # fmt: skip
            card["no_forecast"] = None
        else:
            frame = recent.get(i.symbol)
            decimals = price_decimals(float(frame["close"].iloc[-1]) if frame is not None else None)
            closes = candles_payload(frame, ("close",), decimals)
            card["last"] = _last_price(closes["close"], closes["ts"][-1] if closes["ts"] else None, decimals)
            card["forecast"] = None
            card["no_forecast"] = no_forecast_reason(timeframe, spans.get(i.symbol), window)
        cards.append(card)
    newest = max((p.as_of for p in chosen.values()), default=None)
    return {"timeframe": timeframe, "cards": cards, **data_status(newest, gw.replay_after_h), "stale": False}


def _series(engine: Engine, p: Prediction, gw: GatewaySettings) -> dict[str, Any]:
    decimals = price_decimals(p.last_close)
    frame = latest_candles(engine, p.symbol, p.timeframe, gw.history_candles, as_of=p.as_of)
    until = p.target_ts[-1] if p.target_ts else p.as_of
    realised = realised_candles(engine, p.symbol, p.timeframe, p.as_of, until)
    track, by_step = read_records(engine, p.symbol, p.model_name, p.timeframe, gw)
    return {
        **showcase_fields(p, decimals),
        "model_version": p.model_version,
        "pred_len": p.pred_len,
        "candles": candles_payload(frame, _OHLC, decimals, volume=True),
        "realised": candles_payload(realised, _OHLC, decimals, volume=True),
        "track_record": track,
        "by_step": by_step,
        "provenance": provenance_payload(p),
    }


def symbol_page_payload(engine: Engine, symbol: str, gw: GatewaySettings, calendars: dict[str, str]) -> Payload:
    """Every (model, timeframe) series of ``symbol`` keyed ``"model|timeframe"``, each with the ``history_candles``
    candles before it and the realised candles after its ``as_of``; ``no_forecast`` holds, per timeframe with
    candles but no forecast, the newest candles and the reason. ``default`` is the series shown without
    parameters: the default model's (else the first model's) newest timeframe. ``calendar`` is the market's
    trading calendar from ``calendars`` (asset class -> "24/7", "24/5", "XNYS"): the chart hides the gaps of a
    market that closes."""
    found = get_instruments(engine, [symbol])
    if not found:
        raise unknown_symbol(engine, symbol)
    instrument = found[0]
    slots = forecast_slots(engine, symbol)
    series: dict[str, Any] = {}
    for slot in slots:
        p = latest_prediction(engine, symbol, slot.model_name, slot.timeframe)
        if p is not None:  # None: replaced between the two reads
            series[f"{p.model_name}|{p.timeframe}"] = _series(engine, p, gw)
    models = sorted({key.split("|")[0] for key in series})
    forecast_tfs = {key.split("|")[1] for key in series}
    missing = [tf for tf in TIMEFRAMES if tf not in forecast_tfs]
    no_forecast: dict[str, Any] = {}
    now = datetime.now(UTC)
    for tf in missing:
        span = candle_spans(engine, [symbol], tf).get(symbol)
        if span is None:
            continue
        frame = latest_candles(engine, symbol, tf, gw.history_candles, as_of=now)
        decimals = price_decimals(float(frame["close"].iloc[-1]) if len(frame) else None)
        no_forecast[tf] = {
            "reason": no_forecast_reason(tf, span, forecast_window(engine, tf)),
            "first": iso(span.first),
            "last": iso(span.last),
            "candles": candles_payload(frame, _OHLC, decimals, volume=True),
        }
    timeframes = [tf for tf in TIMEFRAMES if tf in forecast_tfs or tf in no_forecast]
    default = None
    if models:
        model = gw.default_model if gw.default_model in models else models[0]
        default = f"{model}|{resolve_timeframe(slots, model, gw.default_timeframe)}"
        default = default if default in series else sorted(series)[0]
    newest = max((s.as_of for s in slots), default=None)
    return {
        "symbol": symbol,
        **instrument_label(instrument),
        "asset_class": instrument.asset_class,
        "calendar": calendars.get(instrument.asset_class, "24/7"),
        "models": models,
        "timeframes": timeframes,
        "default": default,
        "series": series,
        "no_forecast": no_forecast,
        **data_status(newest, gw.replay_after_h),
        "stale": False,
    }
