"""Promoted adapters in the inference service: read ``model_adapters`` once at start-up and give each
Kronos forecaster the adapted model of every asset class that has a promoted adapter.

Adapters are read from the configured database (``DATABASE_URL``); without one the forecaster serves the
base model and says so in ``GET /models``. An adapter that cannot be loaded (folder gone, trained on other
base weights) is listed with the reason and its class is served by the base model.
"""

from __future__ import annotations

import logging
from typing import Any

from candlecast.config import Settings
from candlecast.models.finetune.adapter import load_adapter
from candlecast.models.kronos import KronosPredictor
from candlecast.models.kronos_forecaster import KronosAdapter, KronosForecaster
from candlecast.store.adapters import AdapterRecord, promoted_adapters
from candlecast.store.candles import get_instruments
from candlecast.store.db import create_engine_for

__all__ = ["attach_promoted_adapters", "describe"]

log = logging.getLogger(__name__)


def describe(record: AdapterRecord, loaded: bool, reason: str | None = None) -> dict[str, Any]:
    """What ``GET /models`` shows about one adapter."""
    gate = record.metrics.get("gate", {}) if isinstance(record.metrics, dict) else {}
    return {
        "asset_class": record.asset_class,
        "adapter_id": record.id,
        "path": record.path,
        "trained_at": record.trained_at.isoformat(),
        "as_of": record.as_of.isoformat() if record.as_of else None,
        "validation_loss": gate.get("candidate", {}).get("validation_loss"),
        "crps": gate.get("candidate", {}).get("crps"),
        "loaded": loaded,
        "reason": reason if reason is not None else record.reason,
    }


def attach_promoted_adapters(forecaster: KronosForecaster, settings: Settings) -> None:
    """Load the promoted adapters of ``forecaster.name`` into it (see the module docstring)."""
    if not settings.database_url:
        forecaster.use_adapters([], {}, status="no database configured (DATABASE_URL): base model only")
        return
    engine = create_engine_for(settings.database_url)
    try:
        records = promoted_adapters(engine, forecaster.name)
        asset_classes = {**settings.universe, **{i.symbol: i.asset_class for i in get_instruments(engine)}}
    except Exception as exc:  # the service still serves the base model
        log.warning("model %s: promoted adapters not read: %s", forecaster.name, exc)
        forecaster.use_adapters([], {}, status=f"adapters not read from the database: {exc}")
        return
    finally:
        engine.dispose()
    base = forecaster.predictor.model
    adapters = []
    for asset_class, record in records.items():
        trained_on = record.metrics.get("base_version") if isinstance(record.metrics, dict) else None
        try:
            if trained_on is not None and trained_on != forecaster.base_version:
                raise ValueError(f"trained on base version {trained_on}, this model is {forecaster.base_version}")
            model = load_adapter(base, record.path, merge=True)
        except Exception as exc:
            log.warning("model %s: adapter #%d for %s not loaded: %s", forecaster.name, record.id, asset_class, exc)
            adapters.append(KronosAdapter(asset_class, record.id, None, describe(record, False, str(exc))))
            continue
        predictor = KronosPredictor(
            model, forecaster.predictor.tokenizer, device=forecaster.device, max_context=forecaster.max_context
        )
        adapters.append(KronosAdapter(asset_class, record.id, predictor, describe(record, True)))
        log.info("model %s: adapter #%d serves %s (%s)", forecaster.name, record.id, asset_class, record.path)
    forecaster.use_adapters(adapters, asset_classes, status=None if records else "no promoted adapter")
