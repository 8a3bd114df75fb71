"""The data of the web pages: the home grid (one card per active instrument, with a small fan chart) and the
symbol page (every stored forecast series of one symbol, with candles). The evaluation page shows the
``performance`` payload."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from candlecast.errors import NotFoundError
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import candles_payload, showcase_fields
from candlecast.store.candles import latest_candles, latest_candles_many
from candlecast.store.predictions import Prediction, latest_prediction, latest_predictions
from candlecast.store.schema import TIMEFRAMES
from candlecast.store.status import forecast_slots, instrument_exists, list_active_instruments

__all__ = ["home_payload", "symbol_page_payload"]


def home_payload(engine: Engine, timeframe: str, default_model: str, n_candles: int) -> Payload:
    """A card per active instrument: its newest ``timeframe`` forecast (by ``default_model`` where there is one,
    else the first model by name) and the ``n_candles`` closes before it."""
    instruments = list_active_instruments(engine)
    by_symbol: dict[str, dict[str, Prediction]] = {}
    for p in latest_predictions(engine, timeframe):
        by_symbol.setdefault(p.symbol, {})[p.model_name] = p
    chosen: dict[str, Prediction] = {}
    for symbol, models in by_symbol.items():
        chosen[symbol] = models.get(default_model) or models[sorted(models)[0]]
    # one candle query per distinct as_of (a replay usually has a single one)
    history: dict[str, pd.DataFrame] = {}
    by_as_of: dict[datetime, list[str]] = {}
    for symbol, p in chosen.items():
        by_as_of.setdefault(p.as_of, []).append(symbol)
    for as_of, symbols in by_as_of.items():
        history.update(latest_candles_many(engine, symbols, timeframe, n_candles, as_of))
    cards = []
    for i in instruments:
        card: dict[str, Any] = {"symbol": i.symbol, "asset_class": i.asset_class, "name": i.name, "forecast": None}
        shown = chosen.get(i.symbol)
        if shown is not None:
            frame = history.get(i.symbol)
            card["forecast"] = {
                **showcase_fields(shown),
                "models": sorted(by_symbol[i.symbol]),
                "history": candles_payload(frame, ("close",)) if frame is not None else {"ts": [], "close": []},
            }
        cards.append(card)
    return {"timeframe": timeframe, "cards": cards, "stale": False}


def symbol_page_payload(engine: Engine, symbol: str, default: tuple[str, str], n_candles: int) -> Payload:
    """Every (model, timeframe) series of ``symbol`` keyed ``"model|timeframe"``, each with the ``n_candles``
    candles before it; ``selected`` is ``default`` (model, timeframe) when it exists."""
    if not instrument_exists(engine, symbol):
        raise NotFoundError("symbol", f"unknown symbol {symbol!r}")
    series: dict[str, Any] = {}
    for slot in forecast_slots(engine, symbol):
        p = latest_prediction(engine, symbol, slot.model_name, slot.timeframe)
        if p is None:  # replaced between the two reads
            continue
        frame = latest_candles(engine, symbol, slot.timeframe, n_candles, as_of=p.as_of)
        series[f"{p.model_name}|{p.timeframe}"] = {
            **showcase_fields(p),
            "model_version": p.model_version,
            "candles": candles_payload(frame, ("open", "high", "low", "close")),
        }
    models = sorted({key.split("|")[0] for key in series})
    timeframes = [tf for tf in TIMEFRAMES if any(key.endswith("|" + tf) for key in series)]
    wanted = f"{default[0]}|{default[1]}"
    selected = wanted if wanted in series else (sorted(series)[0] if series else None)
    return {
        "symbol": symbol,
        "models": models,
        "timeframes": timeframes,
        "selected": selected,
        "series": series,
        "stale": False,
    }
