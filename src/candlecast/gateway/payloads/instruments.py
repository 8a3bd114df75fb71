"""Every instrument: asset class, candle counts and ranges per timeframe, and which forecasts exist."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import iso
from candlecast.store.candles import list_instruments
from candlecast.store.status import forecast_slots

__all__ = ["instruments_payload"]


def instruments_payload(engine: Engine) -> Payload:
    slots: dict[str, list[dict[str, Any]]] = {}
    for s in forecast_slots(engine):
        slots.setdefault(s.symbol, []).append(
            {"model_name": s.model_name, "timeframe": s.timeframe, "as_of": iso(s.as_of),
             "generated_at": iso(s.generated_at)}
        )  # fmt: skip
    rows = []
    for summary in list_instruments(engine):
        i = summary.instrument
        rows.append({
            "symbol": i.symbol, "asset_class": i.asset_class, "name": i.name, "quote_currency": i.quote_currency,
            "bar_kind": i.bar_kind, "active": i.active,
            "candles": {
                "1h": {"rows": summary.rows_1h, "first": iso(summary.first_1h), "last": iso(summary.last_1h)},
                "1d": {"rows": summary.rows_1d, "first": iso(summary.first_1d), "last": iso(summary.last_1d)},
            },
            "forecasts": slots.get(i.symbol, []),
        })  # fmt: skip
    return {"instruments": rows, "stale": False}
