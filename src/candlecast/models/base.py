"""The one interface every forecasting model implements, and the values it takes and returns.

``SeriesInput`` is one instrument's recent candles (validated here, in one place, for the library and the
HTTP service alike); ``Forecaster.forecast`` turns a batch of them into one ``Forecast`` per series: target
timestamps laid out on the instrument's trading calendar, sample paths of the close (plus open/high/low
where the model produces them) and quantiles.

Seeds are per series: ``forecast(..., seed=s)`` gives series ``i`` the seed ``derive_seed(s, i)``, so a
series' forecast depends only on its own data and seed, never on which other series share the batch.
"""

from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from candlecast.errors import InputError
from candlecast.events.channels import N_CHANNELS as N_EVENT_CHANNELS
from candlecast.models.calendars import CALENDARS, TIMEFRAMES, next_timestamps
from candlecast.models.provenance import CODE_VERSION, plain, stable_hash

__all__ = [
    "N_EVENT_CHANNELS",
    "OHLCV_COLUMNS",
    "PerSeriesForecaster",
    "Forecast",
    "Forecaster",
    "InputError",
    "ModelInfo",
    "SamplePaths",
    "SeriesInput",
    "derive_seed",
    "series_seeds",
]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "amount")
# Larger magnitudes are not market data; rejecting them keeps every model's arithmetic finite.
_MAX_ABS_VALUE = 1e15
_CLOSE = 3
_EARLIEST = pd.Timestamp("1900-01-01", tz="UTC")
_LATEST = pd.Timestamp("2200-01-01", tz="UTC")


@dataclass(frozen=True, kw_only=True)
class SeriesInput:
    """One instrument's context: ``T`` candles, oldest first.

    Parameters
    ----------
    timestamps
        ``T`` strictly increasing, timezone-aware instants (converted to UTC).
    ohlcv
        Shape ``(T, 4..6)``: open, high, low, close[, volume[, amount]]; stored as ``(T, 6)`` float64 with NaN
        for absent columns. NaN marks a missing open/high/low/volume/amount (close-only instruments);
        close must be present everywhere.
    symbol, timeframe
        Instrument and candle length (one of ``calendars.TIMEFRAMES``).
    events
        Optional event tensor, shape ``(T, 20)`` (see docs/events.md for the channels).
    future_events
        Optional event rows of the candles to forecast, shape ``(H, 20)`` with ``H >= pred_len``: what is
        known in advance about them (scheduled releases and meetings, countdowns); everything else zero.
        Without it, models that read events see zeros for the horizon.
    calendar
        Trading calendar used for the target timestamps (one of ``calendars.CALENDARS``).
    asset_class
        Optional asset class of the instrument (crypto, equity, fx, commodity, index); models that serve
        fine-tuned adapters per asset class pick one with it.
    """

    timestamps: pd.DatetimeIndex
    ohlcv: np.ndarray
    symbol: str = "series"
    timeframe: str = "1h"
    events: np.ndarray | None = None
    calendar: str = "24/7"
    future_events: np.ndarray | None = None
    asset_class: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise fields once, here
        set_(self, "timestamps", _check_timestamps(self.timestamps))
        set_(self, "ohlcv", _check_ohlcv(self.ohlcv, len(self.timestamps)))
        if self.events is not None:
            set_(self, "events", _check_events(self.events, len(self.timestamps)))
        if self.future_events is not None:
            set_(self, "future_events", _check_events(self.future_events, None, "future_events"))
        if not isinstance(self.symbol, str) or not self.symbol:
            raise InputError("symbol", "must be a non-empty string")
        if self.timeframe not in TIMEFRAMES:
            raise InputError("timeframe", f"expected one of {sorted(TIMEFRAMES)}, found {self.timeframe!r}")
        if self.calendar not in CALENDARS:
            raise InputError("calendar", f"expected one of {list(CALENDARS)}, found {self.calendar!r}")

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def close(self) -> np.ndarray:
        return self.ohlcv[:, _CLOSE]

    @property
    def last_close(self) -> float:
        return float(self.ohlcv[-1, _CLOSE])

    def tail(self, n: int) -> SeriesInput:
        """The last ``n`` candles (the series itself when it is not longer)."""
        if len(self) <= n:
            return self
        return SeriesInput(
            timestamps=self.timestamps[-n:],
            ohlcv=self.ohlcv[-n:],
            symbol=self.symbol,
            timeframe=self.timeframe,
            events=None if self.events is None else self.events[-n:],
            calendar=self.calendar,
            future_events=self.future_events,
            asset_class=self.asset_class,
        )

    def target_timestamps(self, pred_len: int) -> pd.DatetimeIndex:
        """The ``pred_len`` candle timestamps after the last one, skipping closed sessions."""
        try:
            return next_timestamps(self.timestamps[-1], self.timeframe, pred_len, self.calendar)
        except (ValueError, OverflowError) as exc:  # e.g. beyond the calendar's or pandas' range
            raise InputError("timestamps", f"cannot place {pred_len} candles after the last one: {exc}") from None


def _check_timestamps(raw: object) -> pd.DatetimeIndex:
    try:
        ts = pd.DatetimeIndex(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError("timestamps", f"not readable as datetimes ({exc})") from None
    if len(ts) == 0:
        raise InputError("timestamps", "empty context: at least one candle is needed")
    if ts.tz is None:
        raise InputError("timestamps", "must be timezone-aware (UTC), found naive datetimes")
    if ts.hasnans:
        raise InputError("timestamps", "contains missing values")
    ts = ts.tz_convert("UTC").as_unit("ns")
    if ts.min() < _EARLIEST or ts.max() > _LATEST:
        raise InputError("timestamps", f"must lie between {_EARLIEST.year} and {_LATEST.year}")
    steps = np.diff(ts.asi8)  # type: ignore[attr-defined]  # asi8 is missing from pandas-stubs
    if (steps <= 0).any():
        bad = int(np.argmax(steps <= 0)) + 1
        raise InputError("timestamps", f"must be strictly increasing; index {bad} is not after index {bad - 1}")
    return ts


def _check_ohlcv(raw: object, n: int) -> np.ndarray:
    try:
        arr = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError("ohlcv", f"not a numeric array ({exc})") from None
    if arr.ndim != 2 or not 4 <= arr.shape[1] <= 6:
        raise InputError(
            "ohlcv", f"expected shape (T, 4..6) (open, high, low, close[, volume[, amount]]), found {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InputError("ohlcv", "empty context: at least one candle is needed")
    if arr.shape[0] != n:
        raise InputError("ohlcv", f"has {arr.shape[0]} rows but timestamps has {n}")
    if arr.shape[1] < 6:
        arr = np.concatenate([arr, np.full((n, 6 - arr.shape[1]), np.nan)], axis=1)
    if np.isinf(arr).any() or (np.abs(np.nan_to_num(arr)) > _MAX_ABS_VALUE).any():
        row, col = np.argwhere(np.isinf(arr) | (np.abs(np.nan_to_num(arr)) > _MAX_ABS_VALUE))[0]
        raise InputError("ohlcv", f"non-finite or out-of-range value at row {row}, column {OHLCV_COLUMNS[col]}")
    if np.isnan(arr[:, _CLOSE]).any():
        row = int(np.argmax(np.isnan(arr[:, _CLOSE])))
        raise InputError(
            "ohlcv", f"close is missing (null/NaN) at row {row}; only open/high/low/volume/amount may be missing"
        )
    o, h, lo, c, v, a = arr.T
    with np.errstate(invalid="ignore"):
        top = np.fmax(np.fmax(o, c), lo)  # fmax ignores NaN
        bottom = np.fmin(np.fmin(o, c), h)
        tol = 1e-9 * np.abs(c)
        bad = (h < top - tol) | (lo > bottom + tol)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            "ohlcv", f"OHLC inconsistent at row {row}: need low <= open, close <= high, found {arr[row, :4].tolist()}"
        )
    negative = (v < 0) | (a < 0)
    if negative.any():
        raise InputError("ohlcv", f"negative volume or amount at row {int(np.argmax(negative))}")
    return arr


def _check_events(raw: object, n: int | None, field: str = "events") -> np.ndarray:
    """An (n, 20) float32 event tensor; ``n`` None accepts any number of rows."""
    try:
        arr = np.array(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(field, f"not a numeric array ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != N_EVENT_CHANNELS or (n is not None and arr.shape[0] != n):
        rows = "n" if n is None else n
        raise InputError(field, f"expected shape ({rows}, {N_EVENT_CHANNELS}) (one row per candle), found {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(field, "contains non-finite values")
    return arr


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """One series' forecast.

    ``samples`` has shape ``(sample_count, pred_len)`` (close); ``quantiles`` has shape
    ``(len(quantile_levels), pred_len)``; ``ohlc_samples``, when the model gives it, has shape
    ``(sample_count, pred_len, 4)`` (open, high, low, close).
    """

    symbol: str
    timeframe: str
    model_name: str
    model_version: str
    target_timestamps: pd.DatetimeIndex
    samples: np.ndarray
    quantile_levels: tuple[float, ...]
    quantiles: np.ndarray
    last_close: float
    ohlc_samples: np.ndarray | None = None
    seed: int | None = None
    # where it came from: the model's part (``Forecaster.provenance``) plus the adapter and seed of this series
    provenance: dict[str, Any] | None = None

    @property
    def pred_len(self) -> int:
        return len(self.target_timestamps)

    def quantile(self, level: float) -> np.ndarray:
        """The ``(pred_len,)`` quantile path at ``level`` (which must be one of ``quantile_levels``)."""
        for i, known in enumerate(self.quantile_levels):
            if math.isclose(known, level, abs_tol=1e-9):
                return self.quantiles[i]
        raise KeyError(f"quantile level {level} not in {self.quantile_levels}")

    @property
    def p10(self) -> np.ndarray:
        return self.quantile(0.1)

    @property
    def p50(self) -> np.ndarray:
        return self.quantile(0.5)

    @property
    def p90(self) -> np.ndarray:
        return self.quantile(0.9)


@dataclass(frozen=True)
class ModelInfo:
    """What ``GET /models`` reports about a loaded model."""

    name: str
    kind: str
    version: str
    context_length: int  # the most candles the model reads (longer contexts are trimmed)
    parameters: int
    device: str
    gives_ohlc: bool
    gives_samples: bool = True
    uses_events: bool = False
    takes_adapters: bool = False
    min_context: int = 1  # the fewest candles it forecasts from
    details: dict[str, object] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)  # the model-level part (``Forecaster.provenance``)


class SamplePaths(NamedTuple):
    """What a model returns for one series (shapes use S = sample_count, H = pred_len, Q = levels)."""

    close: np.ndarray  # (S, H)
    ohlc: np.ndarray | None = None  # (S, H, 4)
    quantiles: np.ndarray | None = None  # (Q, H); computed from ``close`` when None


def derive_seed(seed: int, index: int) -> int:
    """The seed of series ``index`` in a request seeded with ``seed`` (independent streams, 63 bits)."""
    state = np.random.SeedSequence(entropy=int(seed) & (2**128 - 1), spawn_key=(index,)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def series_seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    """Per-series seeds: one int derives ``n`` seeds; a sequence is taken as given; None stays random."""
    if seed is None:
        return [None] * n
    if isinstance(seed, int | np.integer):
        return [derive_seed(int(seed), i) for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"seed: expected {n} per-series seeds, found {len(seeds)}")
    return seeds


def _uncross(quantiles: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Quantiles made monotone in their level at every step, whatever the model did; keeps level order."""
    order = np.argsort(levels)
    out = np.empty_like(quantiles, dtype=np.float64)
    out[order] = np.sort(np.asarray(quantiles, dtype=np.float64)[order], axis=0)
    return out


class Forecaster(ABC):
    """A forecasting model. Subclasses set the attributes and implement ``_sample``.

    ``forecast`` validates the call, trims contexts to ``max_context``, lays out target timestamps and
    computes quantiles from the sample paths (unless the model gives its own).

    Callers ask a model what it can do through the capability flags, never through its ``kind``:

    - ``gives_samples``: returns sample paths (False: only quantiles, repeated as degenerate paths);
    - ``gives_ohlc``: the paths carry open/high/low as well as the close;
    - ``uses_events``: reads ``SeriesInput.events`` / ``future_events`` (others ignore them, so callers
      need not build the tensor);
    - ``takes_adapters``: serves fine-tuned adapters per asset class (``use_adapters``).
    """

    name: str
    kind: str  # the family, for display ("kronos", "baseline"); never branch on it
    version: str
    max_context: int
    min_context: int = 1
    device: str = "cpu"
    parameters: int = 0
    gives_samples: bool = True
    gives_ohlc: bool = False
    uses_events: bool = False
    takes_adapters: bool = False
    # sha256 of each weights file loaded (role -> hex digest), set by the loader; None: no weights (statistical)
    checkpoint_sha256: dict[str, str] | None = None
    # the attributes holding the settings that define a model's forecasts (dataclasses or pydantic models)
    _CONFIG_ATTRIBUTES: tuple[str, ...] = ("config", "settings", "sampling")

    def model_config(self) -> dict[str, Any]:
        """The settings that define this model's forecasts (no paths, no secrets): context bounds plus its
        configuration objects."""
        out: dict[str, Any] = {"kind": self.kind, "max_context": self.max_context, "min_context": self.min_context}
        for name in self._CONFIG_ATTRIBUTES:
            value = getattr(self, name, None)
            if value is not None:
                out[name] = plain(value)
        return out

    def provenance(self) -> dict[str, Any]:
        """The model-level provenance: name, revision, checkpoint hashes, configuration and its hash, and the
        code version serving it."""
        config = self.model_config()
        return {
            "model": self.name,
            "revision": self.version,
            "checkpoint_sha256": None if self.checkpoint_sha256 is None else dict(self.checkpoint_sha256),
            "config": config,
            "config_sha256": stable_hash(config),
            "code_version": CODE_VERSION,
        }

    def adapter_for(self, series: SeriesInput) -> dict[str, Any] | None:
        """The fine-tune adapter that serves ``series`` (None: the base model); models with adapters say."""
        return None

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            kind=self.kind,
            version=self.version,
            context_length=self.max_context,
            parameters=self.parameters,
            device=self.device,
            gives_ohlc=self.gives_ohlc,
            gives_samples=self.gives_samples,
            uses_events=self.uses_events,
            takes_adapters=self.takes_adapters,
            min_context=self.min_context,
            provenance=self.provenance(),
        )

    def forecast(
        self,
        series: Sequence[SeriesInput],
        pred_len: int,
        sample_count: int = 32,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        seed: int | Sequence[int | None] | None = None,
    ) -> list[Forecast]:
        """Forecast ``pred_len`` candles ahead for each series.

        Parameters
        ----------
        series
            The contexts; each is trimmed to its last ``max_context`` candles.
        pred_len, sample_count
            Horizon in candles and number of sample paths per series (both >= 1).
        quantile_levels
            Levels in (0, 1) reported in ``Forecast.quantiles``, in this order.
        seed
            One int (series ``i`` uses ``derive_seed(seed, i)``), one seed per series, or None (a random seed
            per series, reported in ``Forecast.seed``).

        Returns
        -------
        One ``Forecast`` per series, in input order.
        """
        if isinstance(pred_len, bool) or not isinstance(pred_len, int) or pred_len < 1:
            raise InputError("pred_len", f"must be an integer >= 1, found {pred_len!r}")
        if isinstance(sample_count, bool) or not isinstance(sample_count, int) or sample_count < 1:
            raise InputError("sample_count", f"must be an integer >= 1, found {sample_count!r}")
        levels = tuple(float(q) for q in quantile_levels)
        if not levels or not all(0.0 < q < 1.0 for q in levels):
            raise InputError("quantile_levels", f"need at least one level, each in (0, 1); found {levels}")
        # A random seed is drawn for each unseeded series, and reported, so any forecast can be reproduced.
        seeds: list[int | None] = [
            sd if sd is not None else secrets.randbits(63) for sd in series_seeds(seed, len(series))
        ]
        for i, s in enumerate(series):
            if s.future_events is not None and len(s.future_events) < pred_len:
                raise InputError(
                    f"series[{i}].future_events",
                    f"needs at least pred_len={pred_len} rows, found {len(s.future_events)}",
                )
        contexts = [s.tail(self.max_context) for s in series]
        for i, s in enumerate(contexts):
            if len(s) < self.min_context:
                raise InputError(
                    f"series[{i}].ohlcv", f"model {self.name} needs at least {self.min_context} candles, found {len(s)}"
                )
        if not contexts:
            return []
        targets = []
        for i, s in enumerate(contexts):
            try:
                targets.append(s.target_timestamps(pred_len))
            except InputError as exc:
                raise InputError(f"series[{i}].{exc.field}", exc.message) from None
        paths = self._sample(contexts, targets, sample_count, seeds, levels)
        model_provenance = self.provenance()
        forecasts = []
        for s, target, p, sd in zip(contexts, targets, paths, seeds, strict=True):
            assert p.close.shape == (sample_count, pred_len), p.close.shape
            quantiles = p.quantiles if p.quantiles is not None else np.quantile(p.close, levels, axis=0)
            forecasts.append(
                Forecast(
                    symbol=s.symbol,
                    timeframe=s.timeframe,
                    model_name=self.name,
                    model_version=self.version,
                    target_timestamps=target,
                    samples=p.close,
                    quantile_levels=levels,
                    quantiles=_uncross(quantiles, levels),
                    last_close=s.last_close,
                    ohlc_samples=p.ohlc,
                    seed=sd,
                    provenance={**model_provenance, "adapter": self.adapter_for(s), "seed": sd},
                )
            )
        return forecasts

    @abstractmethod
    def _sample(
        self,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
        quantile_levels: tuple[float, ...],
    ) -> list[SamplePaths]:
        """Sample paths for each (already trimmed) series over its ``targets`` (all of length pred_len);
        ``seeds[i]`` seeds series ``i`` alone."""


class PerSeriesForecaster(Forecaster):
    """A forecaster that samples each series on its own (the statistical models): ``_sample_one`` per series."""

    def _sample(
        self,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
        quantile_levels: tuple[float, ...],
    ) -> list[SamplePaths]:
        return [
            self._sample_one(s, i, len(target), sample_count, seed, quantile_levels)
            for i, (s, target, seed) in enumerate(zip(series, targets, seeds, strict=True))
        ]

    @abstractmethod
    def _sample_one(
        self, s: SeriesInput, index: int, pred_len: int, sample_count: int, seed: int | None, levels: tuple[float, ...]
    ) -> SamplePaths:
        """``pred_len`` steps of ``sample_count`` paths for series ``s`` (``index`` names it in errors)."""
