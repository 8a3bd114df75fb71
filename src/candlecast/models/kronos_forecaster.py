"""Kronos behind the ``Forecaster`` interface: loading by hub id or local folder, and sampling paths.

The heavy lifting (tokenizer, autoregressive predictor, sampling) is ``candlecast.models.kronos``; this
module turns ``SeriesInput`` batches into the DataFrames and timestamps ``KronosPredictor.sample`` takes,
fills the columns a close-only instrument lacks, and turns the sampled candles into a ``Forecast``.

Fine-tune adapters (``candlecast.models.finetune``): a forecaster may carry one adapted model per asset
class (``attach_adapters`` loads the promoted ones from their folders; ``use_adapters`` sets loaded ones).
Each series goes to the adapted model of its asset class (``SeriesInput.asset_class``, else the symbol's
class in the ``asset_classes`` map given with the adapters), or to the base model when that class has none;
seeds are per series, so the grouping never changes a series' paths.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from candlecast.config import ModelSpec
from candlecast.models.base import N_EVENT_CHANNELS, OHLCV_COLUMNS, Forecaster, ModelInfo, SamplePaths, SeriesInput

if TYPE_CHECKING:
    from candlecast.models.finetune.manifest import PromotedAdapter
    from candlecast.models.kronos import KronosPredictor

__all__ = ["KronosAdapter", "KronosForecaster", "KronosSampling", "kronos_frame", "weights_version"]

_CLOSE = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KronosSampling:
    """Decoding settings passed to ``KronosPredictor.sample``."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.9


@dataclass
class KronosAdapter:
    """A fine-tuned variant of the model for one asset class; ``predictor`` is None when it failed to load
    (``description`` then says why and that class is served by the base model)."""

    asset_class: str
    adapter_id: int
    predictor: KronosPredictor | None
    description: dict[str, Any] = field(default_factory=dict)


class KronosForecaster(Forecaster):
    """A Kronos tokenizer + predictor pair producing ``sample_count`` OHLCV paths per series."""

    kind = "kronos"
    gives_ohlc = True
    uses_events = True
    takes_adapters = True
    min_context = 2

    def __init__(
        self,
        name: str,
        predictor: KronosPredictor,
        *,
        version: str,
        max_context: int,
        parameters: int = 0,
        device: str = "cpu",
        sampling: KronosSampling | None = None,
    ) -> None:
        self.name = name
        self.predictor = predictor
        self.version = version
        self.max_context = max_context
        self.parameters = parameters
        self.device = device
        self.sampling = sampling or KronosSampling()
        self.base_version = version
        self.adapters: dict[str, KronosAdapter] = {}  # asset class -> adapter
        self.asset_classes: Mapping[str, str] = {}  # symbol -> asset class
        self.adapters_status: str | None = None  # why no adapter is in use, when none is

    def use_adapters(
        self, adapters: Sequence[KronosAdapter], asset_classes: Mapping[str, str], status: str | None = None
    ) -> None:
        """Serve each asset class with its loaded adapter; the version then names them (``+crypto@12``)."""
        self.adapters = {a.asset_class: a for a in adapters}
        self.asset_classes = dict(asset_classes)
        self.adapters_status = status
        loaded = sorted((a.asset_class, a.adapter_id) for a in adapters if a.predictor is not None)
        self.version = self.base_version + "".join(f"+{ac}@{adapter_id}" for ac, adapter_id in loaded)

    def attach_adapters(
        self,
        promoted: Mapping[str, PromotedAdapter],
        asset_classes: Mapping[str, str],
        status: str | None = None,
    ) -> None:
        """Load the promoted adapter of each asset class (``promoted``: asset class -> adapter) on top of the
        base weights and serve with them; ``asset_classes`` maps symbols to classes for series that do not
        say theirs. An adapter that cannot be loaded (folder gone, trained on other base weights) is listed
        with the reason and its class is served by the base model. ``status`` says why none is in use."""
        from candlecast.models.finetune.adapter import load_adapter
        from candlecast.models.kronos import KronosPredictor

        adapters = []
        for asset_class, entry in sorted(promoted.items()):
            try:
                if entry.base_version is not None and entry.base_version != self.base_version:
                    raise ValueError(f"trained on base version {entry.base_version}, this model is {self.base_version}")
                model = load_adapter(self.predictor.model, entry.path, merge=True)
            except Exception as exc:
                log.warning(
                    "model %s: adapter #%d for %s not loaded: %s", self.name, entry.adapter_id, asset_class, exc
                )
                adapters.append(
                    KronosAdapter(asset_class, entry.adapter_id, None, entry.describe(asset_class, False, str(exc)))
                )
                continue
            predictor = KronosPredictor(
                model, self.predictor.tokenizer, device=self.device, max_context=self.max_context
            )
            adapters.append(KronosAdapter(asset_class, entry.adapter_id, predictor, entry.describe(asset_class, True)))
            log.info("model %s: adapter #%d serves %s (%s)", self.name, entry.adapter_id, asset_class, entry.path)
        self.use_adapters(adapters, asset_classes, status=status if status or promoted else "no promoted adapter")

    def info(self) -> ModelInfo:
        info = super().info()
        info.details["adapters"] = [a.description for a in self.adapters.values()]
        if self.adapters_status:
            info.details["adapters_status"] = self.adapters_status
        return info

    def adapter_for(self, series: SeriesInput) -> dict[str, Any] | None:
        """The loaded adapter serving ``series`` (asset class and id), or None when the base model does."""
        adapter = self.adapters.get(series.asset_class or self.asset_classes.get(series.symbol, ""))
        if adapter is None or adapter.predictor is None:
            return None
        return {"asset_class": adapter.asset_class, "adapter_id": adapter.adapter_id}

    def model_config(self) -> dict[str, Any]:
        return {**super().model_config(), "base_revision": self.base_version}

    def predictor_for(self, series: SeriesInput) -> KronosPredictor:
        """The adapted predictor of the series' asset class (its own ``asset_class``, else its symbol's in
        ``asset_classes``), else the base predictor."""
        asset_class = series.asset_class or self.asset_classes.get(series.symbol, "")
        adapter = self.adapters.get(asset_class)
        return adapter.predictor if adapter is not None and adapter.predictor is not None else self.predictor

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "cpu", sampling: KronosSampling | None = None) -> KronosForecaster:
        """Load tokenizer and model from ``spec`` (hub ids or local folders); raises with a readable reason."""
        from candlecast.models.kronos import Kronos, KronosPredictor, KronosTokenizer

        if not spec.model_source or not spec.tokenizer_source:
            raise ValueError(f"model {spec.name!r} needs both model_source and tokenizer_source")
        tokenizer = _from_source(KronosTokenizer, "tokenizer", spec.tokenizer_source, None)
        model = _from_source(Kronos, "model", spec.model_source, spec.revision)  # the revision pins the model
        predictor = KronosPredictor(model, tokenizer, device=device, max_context=spec.max_context)
        parameters = model.num_parameters()
        forecaster = cls(
            spec.name,
            predictor,
            version=spec.revision or weights_version(spec.model_source),
            max_context=spec.max_context,
            parameters=parameters,
            device=device,
            sampling=sampling,
        )
        hashes = {"model": model.weights_sha256, "tokenizer": tokenizer.weights_sha256}
        forecaster.checkpoint_sha256 = {role: h for role, h in hashes.items() if h is not None}
        return forecaster

    def _sample(
        self,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
        quantile_levels: tuple[float, ...],
    ) -> list[SamplePaths]:
        groups: dict[int, list[int]] = {}  # predictor -> the series it forecasts
        predictors = {}
        for i, s in enumerate(series):
            predictor = self.predictor_for(s)
            predictors[id(predictor)] = predictor
            groups.setdefault(id(predictor), []).append(i)
        out: list[SamplePaths | None] = [None] * len(series)
        for key, members in groups.items():
            paths = self._sample_with(
                predictors[key], [series[i] for i in members], [targets[i] for i in members], sample_count,
                [seeds[i] for i in members],
            )  # fmt: skip
            for i, p in zip(members, paths, strict=True):
                out[i] = p
        return [p for p in out if p is not None]

    def _sample_with(
        self,
        predictor: KronosPredictor,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
    ) -> list[SamplePaths]:
        pred_len = len(targets[0])
        with_events = any(s.events is not None or s.future_events is not None for s in series)
        result = predictor.sample(
            [kronos_frame(s) for s in series],
            [s.timestamps for s in series],
            targets,
            pred_len,
            sample_count=sample_count,
            T=self.sampling.temperature,
            top_k=self.sampling.top_k,
            top_p=self.sampling.top_p,
            # Every series has its own generator, so its paths do not depend on its batch-mates.
            seed=[int(sd) for sd in seeds if sd is not None],  # base.forecast has resolved every seed
            # Long horizons would leave little history inside the window: slide it like the reference.
            sliding_window=pred_len > self.max_context // 2,
            events=[_events(s, pred_len) for s in series] if with_events else None,
        )
        paths = np.asarray(result.paths, dtype=np.float64)  # (B, S, H, 6)
        return [SamplePaths(close=p[:, :, _CLOSE], ohlc=p[:, :, :4]) for p in paths]


def _events(s: SeriesInput, pred_len: int) -> np.ndarray:
    """History rows of the event tensor, then ``pred_len`` horizon rows: what is known in advance about the
    forecast candles (``future_events``), else zeros ("no event known")."""
    history = s.events if s.events is not None else np.zeros((len(s), N_EVENT_CHANNELS), dtype=np.float32)
    if s.future_events is not None:
        horizon = s.future_events[:pred_len]
    else:
        horizon = np.zeros((pred_len, N_EVENT_CHANNELS), dtype=np.float32)
    return np.concatenate([history, horizon])


def kronos_frame(s: SeriesInput) -> pd.DataFrame:
    """The six columns Kronos reads, with gaps filled the way the reference predictor fills them:
    missing open/high/low take the close; missing volume is 0; missing amount is volume x mean price."""
    o, h, lo, c, v, a = s.ohlcv.T.copy()
    for col in (o, h, lo):
        np.copyto(col, c, where=np.isnan(col))
    v = np.nan_to_num(v, nan=0.0)
    a = np.where(np.isnan(a), v * (o + h + lo + c) / 4.0, a)
    return pd.DataFrame(dict(zip(OHLCV_COLUMNS, (o, h, lo, c, v, a), strict=True)))


def _from_source(cls: Any, what: str, source: str, revision: str | None) -> Any:
    try:
        return cls.from_pretrained(source, revision)
    except Exception as exc:
        raise RuntimeError(f"cannot load the Kronos {what} from {source!r}: {exc}") from exc


def weights_version(source: str) -> str:
    """A local checkpoint is versioned by the hash of its weights; a hub id by its name."""
    weights = Path(source).expanduser() / "model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256()
        with weights.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()[:12]}"
    return source
