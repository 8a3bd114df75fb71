"""Where forecasts come from, as swappable transports: the inference service over HTTP, or a model loaded in
this process. The batch job and the replay see only ``ForecastTransport``.

- ``HttpTransport``: ``InferenceClient`` (timeouts, retries with backoff on connection errors and 502/503/504);
  once the service is found unreachable, the requests not yet sent fail at once with ``ServiceUnreachable``.
- ``LocalTransport``: a model from the registry, in-process (``--local``); same seeds, same results.

Both answer ``capabilities()`` from the model itself (``GET /models`` over HTTP, the ``Forecaster`` flags
in-process), so callers never guess what a model does from its name.

Importing this module loads no server code (FastAPI) and no model registry; ``LocalTransport.load`` imports
the registry when it is called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from candlecast.config import Settings
from candlecast.errors import InferenceError, InferenceServerError, ServiceUnreachable
from candlecast.inference.client import InferenceClient
from candlecast.models.base import Forecast, Forecaster, SeriesInput

__all__ = ["QUANTILE_LEVELS", "Capabilities", "ForecastTransport", "HttpTransport", "LocalTransport", "open_transport"]

log = logging.getLogger(__name__)

# What batch jobs store: p10, p50, p90.
QUANTILE_LEVELS: tuple[float, float, float] = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class Capabilities:
    """What a model can do (the ``Forecaster`` capability flags), as far as a caller needs to know."""

    uses_events: bool = False
    gives_ohlc: bool = False
    gives_samples: bool = True
    takes_adapters: bool = False
    min_context: int = 1  # the fewest candles the model forecasts from


class ForecastTransport(Protocol):
    """The inference service over HTTP, or a model in-process."""

    name: str

    def forecast(
        self, series: Sequence[SeriesInput], pred_len: int, sample_count: int, seed: int | Sequence[int]
    ) -> list[Forecast]:
        """One forecast per series, in order; raises a ``CandlecastError`` on failure."""
        ...

    def capabilities(self) -> Capabilities: ...

    def close(self) -> None: ...


class HttpTransport:
    """The inference service, through ``InferenceClient``."""

    def __init__(self, settings: Settings, model: str, client: InferenceClient | None = None) -> None:
        cfg = settings.jobs
        self.name = model
        self.url = settings.inference.url
        self.client = client or InferenceClient(
            settings.inference.url,
            token=settings.inference.token,
            timeout=cfg.http_timeout_s,
            retries=cfg.http_retries,
            backoff_s=cfg.http_backoff_s,
        )
        # Once a request finds the service unreachable, the requests not yet sent fail at once.
        self.unreachable: str | None = None
        self._capabilities: Capabilities | None = None

    def forecast(
        self, series: Sequence[SeriesInput], pred_len: int, sample_count: int, seed: int | Sequence[int]
    ) -> list[Forecast]:
        if self.unreachable:
            raise ServiceUnreachable(self.unreachable)
        try:
            return self.client.forecast(
                series, model=self.name, pred_len=pred_len, sample_count=sample_count, seed=seed,
                quantile_levels=QUANTILE_LEVELS, include_ohlc=self.capabilities().gives_ohlc,
            )  # fmt: skip
        except InferenceServerError as exc:
            if exc.status is None:  # no HTTP answer at all: connection refused, reset or timed out
                raise self._mark_unreachable(exc) from exc
            raise

    def capabilities(self) -> Capabilities:
        """The model's flags from ``GET /models`` (asked once); a model the service does not list has none."""
        if self._capabilities is None:
            try:
                listed = {m["name"]: m for m in self.client.models()["models"]}
            except InferenceServerError as exc:
                if exc.status is None:
                    self._mark_unreachable(exc)
                return Capabilities()  # not cached: the next run asks again
            except InferenceError as exc:
                log.warning("GET /models failed (%s); treating model %s as using no events", exc, self.name)
                return Capabilities()
            entry = listed.get(self.name, {})
            self._capabilities = Capabilities(
                uses_events=bool(entry.get("uses_events")),
                gives_ohlc=bool(entry.get("gives_ohlc")),
                gives_samples=entry.get("gives_samples") is not False,
                takes_adapters=bool(entry.get("takes_adapters")),
                min_context=int(entry.get("min_context") or 1),
            )
        return self._capabilities

    def close(self) -> None:
        self.client.close()

    def _mark_unreachable(self, exc: Exception) -> ServiceUnreachable:
        self.unreachable = f"inference service unreachable at {self.url}: {exc}"
        return ServiceUnreachable(self.unreachable)


class LocalTransport:
    """A model loaded in this process (``--local``): no HTTP, same seeds and results as the service."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.forecaster = forecaster
        self.name = forecaster.name

    @classmethod
    def load(cls, settings: Settings, model: str) -> LocalTransport:
        """Load ``model`` from the settings; raises ``ModelUnavailableError`` saying why it did not load."""
        from candlecast.models.registry import Registry

        registry = Registry.from_settings(settings.model_copy(update={"models": model}), warn_unavailable=False)
        return cls(registry.get(model))

    def forecast(
        self, series: Sequence[SeriesInput], pred_len: int, sample_count: int, seed: int | Sequence[int]
    ) -> list[Forecast]:
        return self.forecaster.forecast(
            list(series), pred_len=pred_len, sample_count=sample_count, quantile_levels=QUANTILE_LEVELS, seed=seed
        )

    def capabilities(self) -> Capabilities:
        f = self.forecaster
        return Capabilities(
            uses_events=f.uses_events, gives_ohlc=f.gives_ohlc, gives_samples=f.gives_samples,
            takes_adapters=f.takes_adapters, min_context=f.min_context,
        )  # fmt: skip

    def close(self) -> None:
        pass


def open_transport(settings: Settings, model: str, local: bool) -> ForecastTransport:
    """In-process (``local``) or over HTTP."""
    return LocalTransport.load(settings, model) if local else HttpTransport(settings, model)
