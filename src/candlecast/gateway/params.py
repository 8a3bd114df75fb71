"""Request parameters: every value a read is asked with, parsed and validated before anything else happens.

A malformed value raises ``candlecast.errors.InputError`` naming the field (HTTP 422, an MCP tool error).
What the parse functions return is normalised (symbols upper-cased, the default model filled in), so two
requests that mean the same thing get the same cache key (``reads.cache_key``): the showcase fast path in
``middleware.py`` and the showcase route both parse with ``parse_forecast``. A forecast asked for without a
timeframe keeps ``timeframe=None``: the payload builder picks the newest timeframe that has a forecast of that
symbol (``payloads.forecasts.resolve_timeframe``), which only the store knows.

Whether a well-formed symbol or model exists is not known here: the payload builders find that out from
the store and raise ``NotFoundError`` with what is available.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import NamedTuple

from candlecast.errors import InputError
from candlecast.store.performance import PERFORMANCE_WINDOWS
from candlecast.store.schema import TIMEFRAMES

__all__ = [
    "EVERY_SYMBOL",
    "MODEL_PATTERN",
    "SYMBOL_PATTERN",
    "ForecastParams",
    "PATH_QUESTIONS",
    "PATH_SIDES",
    "PathQuestion",
    "PathsParams",
    "PerformanceParams",
    "PredictionParams",
    "parse_count",
    "parse_forecast",
    "parse_model",
    "parse_optional_timeframe",
    "parse_path_question",
    "parse_paths",
    "parse_performance",
    "parse_prediction",
    "parse_symbol",
    "parse_timeframe",
    "parse_window",
]

# Same rule as the instruments table's CHECK constraint (after upper-casing).
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")
MODEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
PATH_QUESTIONS = ("touch", "close", "first", "drawdown", "runup")
PATH_SIDES = ("above", "below")
EVERY_SYMBOL = "*"  # performance of every symbol, said explicitly (a blank symbol is an error, not "all")


class ForecastParams(NamedTuple):
    """One stored forecast series: what the showcase route and the ``get_forecast`` MCP tool read."""

    symbol: str
    model: str
    timeframe: str | None  # None: the newest timeframe with a forecast of this symbol by this model


class PredictionParams(NamedTuple):
    """``/api/v1/predictions``: a forecast series, optionally with its sample paths and recent candles."""

    symbol: str
    model: str
    timeframe: str | None
    samples: bool
    history: int


class PerformanceParams(NamedTuple):
    """``/api/v1/performance``, the ``get_performance`` tool and the evaluation page: scores filtered by any of
    these (None: all)."""

    symbol: str | None
    model: str | None
    timeframe: str | None
    window: str


class PathsParams(NamedTuple):
    """The sample paths of one stored forecast (the cache key of ``reads.PATHS``): the newest of a (symbol, model,
    timeframe), or the forecast ``forecast_id`` (then ``model``/``timeframe``, when given, must match it)."""

    symbol: str
    model: str | None  # None only with a forecast_id and no model asked
    timeframe: str | None
    forecast_id: int | None


class PathQuestion(NamedTuple):
    """A question asked of the paths (``questions.answer``); validated here, checked against the forecast's
    horizon there. ``by`` is an aware UTC time; ``steps`` and ``by`` are never both set."""

    question: str
    level: float | None
    level_b: float | None
    side: str | None
    steps: int | None
    by: datetime | None
    max_standard_error: float | None


def parse_symbol(raw: str, field: str = "symbol") -> str:
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InputError(field, f"malformed symbol {raw[:40]!r}: 1-32 of A-Z, 0-9, '.', '_', '-'")
    return symbol


def parse_model(raw: str | None, default: str, field: str = "model_name") -> str:
    """``raw``, or ``default`` when it is missing or blank."""
    model = raw or default
    if not MODEL_PATTERN.fullmatch(model):
        raise InputError(field, f"malformed model name {model[:70]!r}")
    return model


def parse_timeframe(raw: str | None, default: str, field: str = "timeframe") -> str:
    """``raw``, or ``default`` when it is missing or blank."""
    timeframe = raw or default
    if timeframe not in TIMEFRAMES:
        raise InputError(field, f"must be one of {list(TIMEFRAMES)}, found {timeframe[:20]!r}")
    return timeframe


def parse_optional_timeframe(raw: str | None, field: str = "timeframe") -> str | None:
    """``raw``, or None when it is missing or blank (the reader picks one)."""
    return parse_timeframe(raw, "", field) if raw else None


def parse_window(raw: str | None, field: str = "window") -> str:
    """A performance window; missing or blank means ``all``."""
    window = raw or "all"
    if window not in PERFORMANCE_WINDOWS:
        raise InputError(field, f"must be one of {list(PERFORMANCE_WINDOWS)}, found {window[:20]!r}")
    return window


def parse_count(value: int, field: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InputError(field, f"must be between {low} and {high}, found {value}")
    return value


def parse_forecast(symbol: str, model_name: str | None, timeframe: str | None, default_model: str) -> ForecastParams:
    return ForecastParams(
        parse_symbol(symbol), parse_model(model_name, default_model), parse_optional_timeframe(timeframe)
    )


def parse_prediction(
    symbol: str,
    model_name: str | None,
    timeframe: str | None,
    samples: bool,
    history: int,
    default_model: str,
    max_history: int,
) -> PredictionParams:
    forecast = parse_forecast(symbol, model_name, timeframe, default_model)
    return PredictionParams(*forecast, samples, parse_count(history, "history", 0, max_history))


def parse_performance(
    symbol: str | None, model_name: str | None, timeframe: str | None, window: str | None
) -> PerformanceParams:
    """Each filter is optional: missing (or blank, but for the symbol) means no filter. The symbol is ``*`` or
    missing for every symbol; a blank one is refused rather than read as "all"."""
    if symbol is not None and not symbol.strip():
        raise InputError("symbol", f"is blank: give a symbol, or {EVERY_SYMBOL!r} for every symbol")
    return PerformanceParams(
        None if symbol is None or symbol.strip() == EVERY_SYMBOL else parse_symbol(symbol),
        parse_model(model_name, "") if model_name else None,
        parse_timeframe(timeframe, "") if timeframe else None,
        parse_window(window),
    )


def parse_paths(
    symbol: str, model_name: str | None, timeframe: str | None, forecast_id: int | None, default_model: str
) -> PathsParams:
    if forecast_id is None:
        return PathsParams(*parse_forecast(symbol, model_name, timeframe, default_model), None)
    if forecast_id < 1:
        raise InputError("forecast_id", f"must be a positive forecast id, found {forecast_id}")
    model = parse_model(model_name, "") if model_name else None
    return PathsParams(parse_symbol(symbol), model, parse_optional_timeframe(timeframe), forecast_id)


def _finite(value: float | None, field: str, positive: bool = True) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or (positive and value <= 0):
        raise InputError(field, f"must be a {'positive ' if positive else ''}finite number, found {value}")
    return float(value)


def _parse_by(raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        ts = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise InputError("by", f"must be an ISO 8601 time such as 2024-03-02T12:00:00Z, found {raw[:40]!r}") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_path_question(
    question: str | None,
    level: float | None = None,
    level_b: float | None = None,
    side: str | None = None,
    steps: int | None = None,
    by: str | None = None,
    max_standard_error: float | None = None,
) -> PathQuestion:
    """Validate a path question: which parameters it needs (``level`` for touch, close and first, ``level_b`` for
    first), the side, the horizon (``steps`` or ``by``, not both) and the asked precision."""
    if question not in PATH_QUESTIONS:
        raise InputError("question", f"must be one of {list(PATH_QUESTIONS)}, found {str(question)[:20]!r}")
    if side is not None and side not in PATH_SIDES:
        raise InputError("side", f"must be one of {list(PATH_SIDES)}, found {side[:20]!r}")
    level = _finite(level, "level")
    level_b = _finite(level_b, "level_b")
    if question in ("touch", "close", "first") and level is None:
        raise InputError("level", f"is required for question {question!r} (a price, in the quote currency)")
    if question == "first" and level_b is None:
        raise InputError("level_b", "is required for question 'first' (the second level, e.g. the target)")
    if steps is not None and by is not None and by.strip():
        raise InputError("by", "give either steps or by, not both")
    if steps is not None and steps < 1:
        raise InputError("steps", f"must be at least 1, found {steps}")
    error = _finite(max_standard_error, "max_standard_error")
    if error is not None and error >= 0.5:
        raise InputError("max_standard_error", f"must be below 0.5 (a probability's standard error), found {error}")
    return PathQuestion(question, level, level_b, side, steps, _parse_by(by), error)
