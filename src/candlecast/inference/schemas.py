"""Request and response bodies of the inference service (pydantic), and their conversion to model inputs.

The JSON types are checked here, strictly: a whole number is a JSON integer (not ``true``, not ``"8"``), a
price a JSON number, a flag a JSON boolean; numbers finite, ``null`` marking a missing open/high/low/volume/amount;
everything that depends on settings or on the meaning of the numbers (context length, OHLC consistency,
increasing timestamps within ``EARLIEST``..``LATEST``, event shape) is checked by ``to_series_inputs`` and
``SeriesInput`` so that every failure names its field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator

from candlecast.config import Settings
from candlecast.errors import InputError
from candlecast.models.base import OHLCV_COLUMNS, Forecast, SeriesInput
from candlecast.models.calendars import calendar_for

__all__ = [
    "ErrorBody",
    "FieldError",
    "ForecastRequest",
    "ForecastResponse",
    "ModelStatus",
    "ModelsResponse",
    "HealthResponse",
    "ModelDescription",
    "PredictRequest",
    "PredictResponse",
    "SeriesForecast",
    "SeriesPayload",
    "RequestInvalid",
    "check_request",
    "to_series_inputs",
]

# Candle times the service takes: pandas' nanosecond times end in 1677 and 2262; the margin leaves room for the
# target times of the longest forecast of the coarsest timeframe.
EARLIEST = datetime(1700, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
# One candle: [open, high, low, close(, volume(, amount))], null for a missing value; or an object with
# those keys.
Row = list[StrictFloat | None]
EventRows = list[list[StrictFloat]]


def _rows_from_objects(value: Any) -> Any:
    """Accept candles as objects ({"open": .., "close": ..}) as well as rows; objects become rows."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        rows = []
        for i, candle in enumerate(value):
            unknown = set(candle) - set(OHLCV_COLUMNS)
            if unknown:
                raise ValueError(f"candle {i} has unknown keys {sorted(unknown)}; expected {list(OHLCV_COLUMNS)}")
            if "close" not in candle:
                raise ValueError(f"candle {i} has no close")
            rows.append([candle.get(k) for k in OHLCV_COLUMNS])
        return rows
    return value


class SeriesPayload(BaseModel):
    """One instrument's context, oldest candle first."""

    model_config = _STRICT

    symbol: str = Field("series", min_length=1, max_length=64)
    timeframe: str = Field("1h", description="1m, 5m, 15m, 30m, 1h, 4h or 1d")
    calendar: str | None = Field(
        None, description="24/7, 24/5 or XNYS; default: from the symbol's asset class, else 24/7"
    )
    asset_class: str | None = Field(
        None, max_length=32, description="crypto, equity, fx, commodity or index; picks a fine-tuned adapter"
    )
    timestamps: list[AwareDatetime] = Field(description="candle open times, timezone-aware, increasing")
    ohlcv: list[Row] = Field(description="rows [open, high, low, close, volume?, amount?]; null = missing")
    events: EventRows | None = Field(None, description="event tensor, one row of 20 per candle")
    future_events: EventRows | None = Field(
        None, description="event rows known in advance for the forecast candles (at least pred_len rows of 20)"
    )

    _objects = field_validator("ohlcv", mode="before")(_rows_from_objects)


class PredictRequest(BaseModel):
    """The original single-series shape: ``{ohlcv, timestamps, events?, pred_len, model?, sample_count?}``."""

    model_config = _STRICT

    ohlcv: list[Row]
    timestamps: list[AwareDatetime]
    events: EventRows | None = None
    pred_len: StrictInt
    model: str | None = None
    sample_count: StrictInt | None = None
    seed: StrictInt | None = None
    symbol: str = Field("series", min_length=1, max_length=64)
    timeframe: str = "1h"
    calendar: str | None = None

    _objects = field_validator("ohlcv", mode="before")(_rows_from_objects)

    def series_payload(self) -> SeriesPayload:
        return SeriesPayload.model_construct(
            symbol=self.symbol,
            timeframe=self.timeframe,
            calendar=self.calendar,
            timestamps=self.timestamps,
            ohlcv=self.ohlcv,
            events=self.events,
        )


class PredictResponse(BaseModel):
    p10: list[float]
    p50: list[float]
    p90: list[float]
    samples: list[list[float]] = Field(description="(sample_count, pred_len) sampled closes")
    target_timestamps: list[AwareDatetime]
    model_name: str
    model_version: str
    last_close: float


class ForecastRequest(BaseModel):
    """Many series, one model, one horizon."""

    model_config = _STRICT

    series: list[SeriesPayload] = Field(min_length=1)
    pred_len: StrictInt
    model: str | None = Field(None, description="a configured model; default: the first one loaded")
    sample_count: StrictInt | None = None
    quantile_levels: list[StrictFloat] | None = Field(None, description="levels in (0, 1); default 0.1, 0.5, 0.9")
    seed: StrictInt | list[StrictInt] | None = Field(
        None,
        description="one int: series i is seeded with derive_seed(seed, i); a list: one seed per series, so a "
        "series draws the same paths however requests are grouped",
    )
    include_samples: StrictBool = True
    include_ohlc: StrictBool = Field(False, description="also (sample_count, pred_len, 4) OHLC paths: 5x the values")


class SeriesForecast(BaseModel):
    symbol: str
    timeframe: str
    target_timestamps: list[AwareDatetime]
    quantile_levels: list[float]
    quantiles: list[list[float]] = Field(description="(len(quantile_levels), pred_len) closes")
    samples: list[list[float]] | None = Field(None, description="(sample_count, pred_len) sampled closes")
    ohlc_samples: list[list[list[float]]] | None = Field(
        None, description="(sample_count, pred_len, 4) sampled open, high, low, close"
    )
    last_close: float
    seed: int | None = None
    provenance: dict[str, Any] | None = Field(
        None,
        description="model, revision, checkpoint_sha256, config and config_sha256, code_version, the adapter that "
        "served the series (or null) and its seed (docs/provenance.md)",
    )


class ForecastResponse(BaseModel):
    model_name: str
    model_version: str
    forecasts: list[SeriesForecast]


class ModelStatus(BaseModel):
    status: str = Field(description="loaded or unavailable")
    kind: str
    device: str | None = None
    reason: str | None = None


class HealthResponse(BaseModel):
    status: str = Field(description="ok (all loaded), degraded (some unavailable) or down (none loaded)")
    models: dict[str, ModelStatus]


class AdapterDescription(BaseModel):
    """A promoted fine-tune adapter of a Kronos model, serving one asset class's series."""

    asset_class: str
    adapter_id: int
    path: str
    trained_at: AwareDatetime
    as_of: AwareDatetime | None = None
    validation_loss: float | None = None
    crps: float | None = None
    loaded: bool = Field(description="false: it failed to load (see reason) and the base model serves the class")
    reason: str | None = None


class ModelDescription(BaseModel):
    name: str
    kind: str
    available: bool
    version: str | None = None
    context_length: int | None = None
    parameters: int | None = None
    device: str | None = None
    gives_ohlc: bool | None = None
    gives_samples: bool | None = None
    uses_events: bool | None = Field(None, description="reads the event tensor (send events / future_events)")
    takes_adapters: bool | None = Field(None, description="serves fine-tuned adapters per asset class")
    min_context: int | None = Field(None, description="the fewest candles it forecasts from")
    reason: str | None = None
    adapters: list[AdapterDescription] | None = Field(None, description="Kronos: promoted adapters by asset class")
    adapters_status: str | None = Field(None, description="why no adapter is in use, when none is")
    provenance: dict[str, Any] | None = Field(
        None, description="model-level provenance: revision, checkpoint_sha256, config, code_version"
    )


class ModelsResponse(BaseModel):
    default: str | None
    models: list[ModelDescription]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class RequestInvalid(InputError):
    """Semantic validation failures of a request, each naming its field (answered with 422)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors[0][0] if errors else "", "; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors

    def __str__(self) -> str:
        return self.message


def check_request(
    settings: Settings,
    *,
    pred_len: int,
    sample_count: int | None,
    quantile_levels: Sequence[float] | None,
    seed: int | Sequence[int] | None,
    n_series: int,
    include_ohlc: bool = False,
) -> tuple[int, tuple[float, ...]]:
    """Range checks of the scalar parameters, and of the work they ask together (series × pred_len ×
    sample_count, × 5 with OHLC paths, at most ``max_request_values``); returns (sample_count, quantile levels)
    with defaults applied."""
    cfg = settings.inference
    errors: list[tuple[str, str]] = []
    if not 1 <= pred_len <= cfg.max_pred_len:
        errors.append(("pred_len", f"must be between 1 and {cfg.max_pred_len}, found {pred_len}"))
    count = cfg.default_sample_count if sample_count is None else sample_count
    if not 1 <= count <= cfg.max_sample_count:
        errors.append(("sample_count", f"must be between 1 and {cfg.max_sample_count}, found {count}"))
    levels = tuple(cfg.default_quantile_levels if quantile_levels is None else quantile_levels)
    if not levels or len(levels) > cfg.max_quantile_levels:
        errors.append(("quantile_levels", f"need 1 to {cfg.max_quantile_levels} levels, found {len(levels)}"))
    elif not all(0.0 < q < 1.0 for q in levels):
        errors.append(("quantile_levels", f"each level must be in (0, 1), found {list(levels)}"))
    elif len(set(levels)) != len(levels):
        errors.append(("quantile_levels", "levels must be distinct"))
    seeds = [] if seed is None else [seed] if isinstance(seed, int) else list(seed)
    if not isinstance(seed, int | None) and len(seeds) != n_series:
        errors.append(("seed", f"give one seed per series ({n_series}), found {len(seeds)}"))
    if any(not 0 <= s < 2**63 for s in seeds):
        errors.append(("seed", f"seeds must be between 0 and 2**63 - 1, found {seed}"))
    if n_series > cfg.max_batch_series:
        errors.append(("series", f"at most {cfg.max_batch_series} series per request, found {n_series}"))
    if not errors:  # each limit holds alone; now their product, which sizes the work and the response
        factor = 5 if include_ohlc else 1
        values = n_series * pred_len * count * factor
        if values > cfg.max_request_values:
            product = f"{n_series} series × {pred_len} steps × {count} samples" + (" × 5 (OHLC)" if factor > 1 else "")
            errors.append(
                (
                    "body",
                    f"too much work for one request: {product} = {values:,} values, over the limit of "
                    f"{cfg.max_request_values:,} (inference.max_request_values); send fewer series, steps or samples "
                    "per request",
                )
            )
    if errors:
        raise RequestInvalid(errors)
    return count, levels


def to_series_inputs(
    payloads: Sequence[SeriesPayload], settings: Settings, prefix: str = "series"
) -> list[SeriesInput]:
    """Validated model inputs; RequestInvalid lists every failing series with its field."""
    errors: list[tuple[str, str]] = []
    out: list[SeriesInput] = []
    limit = settings.inference.max_context_candles
    for i, p in enumerate(payloads):
        where = f"{prefix}[{i}]." if prefix else ""
        if len(p.ohlcv) > limit:
            errors.append((f"{where}ohlcv", f"context too long: at most {limit} candles, found {len(p.ohlcv)}"))
            continue
        widths = {len(row) for row in p.ohlcv}
        if widths - {4, 5, 6}:
            bad = next(j for j, row in enumerate(p.ohlcv) if len(row) not in (4, 5, 6))
            errors.append(
                (
                    f"{where}ohlcv[{bad}]",
                    "a candle is [open, high, low, close, volume?, amount?] "
                    f"(4 to 6 values), found {len(p.ohlcv[bad])}",
                )
            )
            continue
        if len(widths) > 1:
            errors.append((f"{where}ohlcv", f"all candles need the same number of values, found {sorted(widths)}"))
            continue
        ragged = [name for name in ("events", "future_events") if len({len(r) for r in getattr(p, name) or []}) > 1]
        if ragged:
            errors.append((f"{where}{ragged[0]}", "rows of different lengths; expected 20 values per candle"))
            continue
        outside = next((j for j, t in enumerate(p.timestamps) if not EARLIEST <= t < LATEST), None)
        if outside is not None:
            errors.append(
                (
                    f"{where}timestamps[{outside}]",
                    f"must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d}, found {p.timestamps[outside]}",
                )
            )
            continue
        calendar = p.calendar or calendar_for(p.symbol, settings.universe, settings.market_calendars)
        try:
            out.append(
                SeriesInput(
                    timestamps=pd.DatetimeIndex([t.astimezone(UTC) for t in p.timestamps]),
                    ohlcv=np.array(p.ohlcv, dtype=np.float64) if p.ohlcv else np.empty((0, 6)),
                    symbol=p.symbol,
                    timeframe=p.timeframe,
                    events=None if p.events is None else np.array(p.events, dtype=np.float32),
                    future_events=None if p.future_events is None else np.array(p.future_events, dtype=np.float32),
                    calendar=calendar,
                    asset_class=p.asset_class,
                )
            )
        except InputError as exc:
            errors.append((f"{where}{exc.field}", exc.message))
    if errors:
        raise RequestInvalid(errors)
    return out


def series_forecast(f: Forecast, levels: Sequence[float], include_samples: bool, include_ohlc: bool) -> SeriesForecast:
    """The response body of one forecast, reporting ``levels`` (a subset of the forecast's levels)."""
    return SeriesForecast(
        symbol=f.symbol,
        timeframe=f.timeframe,
        target_timestamps=list(f.target_timestamps.to_pydatetime()),
        quantile_levels=list(levels),
        quantiles=[f.quantile(q).tolist() for q in levels],
        samples=f.samples.tolist() if include_samples else None,
        ohlc_samples=f.ohlc_samples.tolist() if include_ohlc and f.ohlc_samples is not None else None,
        last_close=f.last_close,
        seed=f.seed,
        provenance=f.provenance,
    )
