"""The model registry: loads every configured model once and remembers the ones that could not load.

``Registry.from_settings(settings)`` reads ``settings.model_names()`` (``CANDLECAST_MODELS``) and, for each,
``settings.model_spec(name)``; the spec's ``kind`` picks a loader from ``LOADERS``. A model that fails to load
(weights absent offline, a bad folder, an unknown name) does not stop the others: it is recorded as
unavailable with the reason, and ``Registry.get`` raises ``ModelUnavailableError`` carrying that reason.

Adding a model family means adding one loader here. Chronos-2 (kind ``"chronos2"``) has its own issue; until
then its loader reports "not implemented yet" and the model is listed as unavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from candlecast.config import ModelSpec, Settings
from candlecast.errors import ModelUnavailableError, NotFoundError
from candlecast.models.base import Forecaster, ModelInfo
from candlecast.models.baseline import BaselineConfig, BaselineForecaster

__all__ = [
    "LOADERS",
    "ModelEntry",
    "ModelUnavailableError",
    "Registry",
    "UnknownModelError",
]

log = logging.getLogger(__name__)


class UnknownModelError(NotFoundError):
    """The name is not one of the configured models."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__("model", f"unknown model {name!r}; configured models: {known}", available=known)
        self.name = name


@dataclass
class ModelEntry:
    """One configured model: loaded (``forecaster`` set) or unavailable (``reason`` set)."""

    name: str
    kind: str
    forecaster: Forecaster | None
    reason: str | None
    load_seconds: float
    source: str | None = None

    @property
    def available(self) -> bool:
        return self.forecaster is not None

    def info(self) -> ModelInfo | None:
        return None if self.forecaster is None else self.forecaster.info()


Loader = Callable[[ModelSpec, Settings], Forecaster]


def _load_baseline(spec: ModelSpec, settings: Settings) -> Forecaster:
    # ModelSpec.model_source optionally names the method ("gaussian", "gaussian-ewma", "bootstrap").
    config = BaselineConfig(method=spec.model_source) if spec.model_source else BaselineConfig()
    return BaselineForecaster(name=spec.name, config=config)


def _load_garch(spec: ModelSpec, settings: Settings) -> Forecaster:
    from candlecast.models.garch import GarchForecaster  # imports arch (about 2 s) only when configured

    return GarchForecaster(name=spec.name, settings=settings.garch)


def _load_kronos(spec: ModelSpec, settings: Settings) -> Forecaster:
    import torch  # imported only when a neural model is configured

    from candlecast.models.kronos_forecaster import KronosForecaster

    if settings.inference.torch_threads:  # process-wide; one thread is faster on a busy 2-core host
        torch.set_num_threads(settings.inference.torch_threads)
    forecaster = KronosForecaster.load(spec, device=settings.inference.device)
    if settings.inference.load_adapters:  # the promoted fine-tune adapter of each asset class
        from candlecast.models.finetune.serving import attach_promoted_adapters

        attach_promoted_adapters(forecaster, settings)
    return forecaster


def _load_chronos2(spec: ModelSpec, settings: Settings) -> Forecaster:
    # Hook for the Chronos-2 issue: replace this with a loader returning a Chronos-2 Forecaster.
    raise NotImplementedError("the Chronos-2 adapter is not implemented yet")


# ModelSpec.kind -> loader.
LOADERS: dict[str, Loader] = {
    "baseline": _load_baseline,
    "garch": _load_garch,
    "kronos": _load_kronos,
    "chronos2": _load_chronos2,
}


class Registry:
    """The configured models, each loaded once (see the module docstring)."""

    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = {entry.name: entry for entry in entries}

    @classmethod
    def from_settings(
        cls, settings: Settings, loaders: dict[str, Loader] | None = None, warn_unavailable: bool = True
    ) -> Registry:
        """Load every model named in ``settings.model_names()``, in order; failures are recorded, not raised.

        Each unavailable model is logged as a warning, unless ``warn_unavailable`` is False (a caller that
        reports the ``ModelUnavailableError`` of ``get`` itself).
        """
        loaders = LOADERS if loaders is None else loaders
        entries = [cls._load_one(name, settings, loaders, warn_unavailable) for name in settings.model_names()]
        return cls(entries)

    @staticmethod
    def _load_one(name: str, settings: Settings, loaders: dict[str, Loader], warn: bool = True) -> ModelEntry:
        started = time.perf_counter()
        kind, source = "unknown", None
        try:
            spec = settings.model_spec(name)
            kind, source = spec.kind, spec.model_source
            loader = loaders.get(spec.kind)
            if loader is None:
                raise ValueError(f"unknown model kind {spec.kind!r}; known kinds: {sorted(loaders)}")
            forecaster = loader(spec, settings)
        except Exception as exc:  # any failure makes this one model unavailable, never the service
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            reason = reason or type(exc).__name__
            log.log(logging.WARNING if warn else logging.DEBUG, "model %s unavailable: %s", name, reason)
            return ModelEntry(name, kind, None, reason, time.perf_counter() - started, source)
        seconds = time.perf_counter() - started
        log.info("model %s loaded (%s %s) in %.2f s", name, kind, forecaster.version, seconds)
        return ModelEntry(name, kind, forecaster, None, seconds, source)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def entry(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownModelError(name, self.names()) from None

    def get(self, name: str) -> Forecaster:
        """The loaded model ``name``; UnknownModelError or ModelUnavailableError otherwise."""
        entry = self.entry(name)
        if entry.forecaster is None:
            raise ModelUnavailableError(name, entry.reason or "not loaded")
        return entry.forecaster

    def default_name(self) -> str | None:
        """The first configured model that loaded (the model used when a request names none)."""
        return next((e.name for e in self._entries.values() if e.available), None)
