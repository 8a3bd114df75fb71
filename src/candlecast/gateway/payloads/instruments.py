"""Every instrument: its label (name, quote currency), asset class, candle counts and ranges per timeframe (open
times), and which forecasts exist; the data status is that of the newest forecast (or candle, before any)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings
from candlecast.gateway.payloads import Payload
from candlecast.gateway.payloads.fields import data_status, iso
from candlecast.store.candles import list_instruments
from candlecast.store.status import forecast_slots

__all__ = ["instruments_payload"]


def instruments_payload(engine: Engine, gw: GatewaySettings) -> Payload:
    slots: dict[str, list[dict[str, Any]]] = {}
    all_slots = forecast_slots(engine)
    for s in all_slots:
        slots.setdefault(s.symbol, []).append(
            {"model_name": s.model_name, "timeframe": s.timeframe, "as_of": iso(s.as_of),
             "generated_at": iso(s.generated_at)}
        )  # fmt: skip
    rows = []
    summaries = list_instruments(engine)
    for summary in summaries:
        i = summary.instrument
        rows.append({
            "symbol": i.symbol, "name": i.name, "quote_currency": i.quote_currency, "asset_class": i.asset_class,
            "bar_kind": i.bar_kind, "active": i.active,
            "candles": {
                "1h": {"rows": summary.rows_1h, "first": iso(summary.first_1h), "last": iso(summary.last_1h)},
                "1d": {"rows": summary.rows_1d, "first": iso(summary.first_1d), "last": iso(summary.last_1d)},
            },
            "forecasts": slots.get(i.symbol, []),
        })  # fmt: skip
    newest = max((s.as_of for s in all_slots), default=None)
    if newest is None:
        newest = max((t for s in summaries for t in (s.last_1h, s.last_1d) if t is not None), default=None)
    return {"instruments": rows, **data_status(newest, gw.replay_after_h), "stale": False}
