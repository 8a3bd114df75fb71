"""The model registry: loads every configured model once and remembers the ones that could not load.

``Registry.from_settings(settings)`` reads ``settings.model_names()`` (``CANDLECAST_MODELS``) and, for each,
``settings.model_spec(name)``; the spec's ``kind`` picks a loader from ``LOADERS``. A model that fails to load
(weights absent offline, a bad folder, an unknown name) does not stop the others: it is recorded as
unavailable with the reason, and ``Registry.get`` raises ``ModelUnavailableError`` carrying that reason.

Models that take fine-tune adapters (``Forecaster.takes_adapters``) get the promoted adapter of each asset
class from the promoted-adapters manifest (``models.finetune.manifest``, written by the fine-tune job) once
loaded, when ``inference.load_adapters`` is on; ``Registry.attach_adapters`` does it again on demand (the
inference service's ``POST /admin/reload-adapters``). No database is read.

Adding a model family means adding one loader here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from candlecast.config import ModelSpec, Settings
from candlecast.errors import ModelUnavailableError, NotFoundError
from candlecast.models.base import Forecaster, ModelInfo
from candlecast.models.baseline import BaselineConfig, BaselineForecaster

if TYPE_CHECKING:
    from candlecast.models.finetune.manifest import AdapterManifest, PromotedAdapter

__all__ = [
    "LOADERS",
    "ModelEntry",
    "ModelUnavailableError",
    "Registry",
    "TakesAdapters",
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
    return KronosForecaster.load(spec, device=settings.inference.device)


def _load_chronos2(spec: ModelSpec, settings: Settings) -> Forecaster:
    import torch  # imported only when a neural model is configured

    from candlecast.models.chronos2 import Chronos2Forecaster

    if settings.inference.torch_threads:  # process-wide, as for Kronos
        torch.set_num_threads(settings.inference.torch_threads)
    return Chronos2Forecaster.load(spec, device=settings.inference.device)


# ModelSpec.kind -> loader.
LOADERS: dict[str, Loader] = {
    "baseline": _load_baseline,
    "garch": _load_garch,
    "kronos": _load_kronos,
    "chronos2": _load_chronos2,
}


class TakesAdapters(Protocol):
    """What a forecaster with ``takes_adapters`` offers: load the promoted adapter of each asset class."""

    def attach_adapters(
        self, promoted: Mapping[str, PromotedAdapter], asset_classes: Mapping[str, str], status: str | None = None
    ) -> None: ...


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
        registry = cls(entries)
        if settings.inference.load_adapters:
            registry.attach_adapters(settings)
        return registry

    def attach_adapters(self, settings: Settings, manifest: AdapterManifest | None = None) -> None:
        """Give every loaded model that takes adapters the promoted adapters of its name, from ``manifest`` or
        else from the manifest file in the adapters directory. A missing or unreadable file leaves those
        models on their base weights, with the reason in ``GET /models`` (``adapters_status``)."""
        from candlecast.models.finetune.manifest import manifest_path, read_manifest

        takers = [e for e in self._entries.values() if e.forecaster is not None and e.forecaster.takes_adapters]
        if not takers:
            return
        status = None
        if manifest is None:
            path = manifest_path(settings)
            try:
                manifest = read_manifest(path)
            except Exception as exc:  # the models still serve, on their base weights
                log.warning("promoted-adapters manifest %s not read: %s", path, exc)
                status = f"adapters manifest {path} not read: {exc}"
            else:
                status = None if manifest is not None else f"no promoted adapter (no manifest at {path})"
        for entry in takers:
            promoted = manifest.for_model(entry.name) if manifest is not None else {}
            cast(TakesAdapters, entry.forecaster).attach_adapters(promoted, settings.universe, status)

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
