"""One fine-tune run (``run_finetune``) and the monthly job over every asset class (``run_rolling_finetune``).

A run, for one asset class and base model, as of a time:

1. load the base checkpoint (published weights must be present: offline without them the run stops with
   ``WeightsNotAvailableError``, it never trains on anything else);
2. read the class's candles and event tensors as of the time, cut windows, split them by time, tokenise;
3. train LoRA + the event projection (``train.train``), measuring the training loss before and after;
4. score the new adapter and the incumbent (the promoted adapter, else the base model) on the held-out
   windows and apply the gate (``gate.decide``);
5. write the adapter folder (``<adapters_dir>/<base>/<class>/<as_of>-<trained_at>``) and a
   ``model_adapters`` row, promoted or not, with the gate's reason;
6. when promoted, publish the promoted adapters to the model server: rewrite the manifest from
   ``model_adapters`` (``promotion.publish_promoted``; the row is written first). The monthly job then tells
   the running inference service (``promotion.tell_inference_service``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sqlalchemy.engine import Engine

from candlecast.config import FinetuneSettings, ModelSpec, Settings
from candlecast.errors import NotEnoughDataError, WeightsNotAvailableError
from candlecast.jobs.finetune.gate import GateScores, decide, score
from candlecast.jobs.finetune.promotion import publish_promoted, tell_inference_service
from candlecast.jobs.finetune.windows import build_windows, read_series, settings_window_check, split_by_time
from candlecast.models.finetune.adapter import adapted_model, load_adapter, save_adapter, with_lora
from candlecast.models.finetune.data import CandleSeries, TokenisedWindows, Windows, tokenise
from candlecast.models.finetune.manifest import AdapterManifest, adapters_root
from candlecast.models.finetune.train import mean_loss, train
from candlecast.models.kronos import Kronos, KronosTokenizer
from candlecast.models.kronos_forecaster import weights_version
from candlecast.store.adapters import get_adapter, insert_adapter, promoted_adapter
from candlecast.store.candles import get_instruments

__all__ = [
    "BaseCheckpoint",
    "FinetuneData",
    "FinetuneResult",
    "GateOutcome",
    "RollingResult",
    "apply_gate",
    "load_base",
    "prepare_data",
    "run_finetune",
    "run_rolling_finetune",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaseCheckpoint:
    """The base model a fine-tune starts from (shared, never modified)."""

    name: str
    spec: ModelSpec
    model: Kronos
    tokenizer: KronosTokenizer
    version: str


def load_base(settings: Settings, base_model: str) -> BaseCheckpoint:
    """Load ``base_model`` (a configured or published Kronos name). Raises ``WeightsNotAvailableError`` when
    its weights are neither local nor downloadable, ValueError when the name is not a Kronos model."""
    try:
        spec = settings.model_spec(base_model)
    except KeyError as exc:
        raise ValueError(f"base: {exc.args[0]}") from None
    if spec.kind != "kronos" or not spec.model_source or not spec.tokenizer_source:
        raise ValueError(f"base: {base_model!r} is not a Kronos model with model and tokenizer sources")
    try:
        model = Kronos.from_pretrained(spec.model_source, spec.revision)
        tokenizer = KronosTokenizer.from_pretrained(spec.tokenizer_source)
    except FileNotFoundError as exc:  # WeightsNotAvailableError, or a local folder that does not exist
        raise WeightsNotAvailableError(
            f"cannot fine-tune {base_model}: its published weights are not available here ({exc}). "
            f"Nothing was trained. Put the checkpoints where the hub is reachable, or point "
            f"CANDLECAST_MODEL_SOURCES at local folders holding them."
        ) from exc
    return BaseCheckpoint(base_model, spec, model, tokenizer, spec.revision or weights_version(spec.model_source))


@dataclass(frozen=True)
class FinetuneData:
    """The tokenised windows of one run."""

    series: list[CandleSeries]
    cutoff: pd.Timestamp  # training windows end before it, validation windows start at or after it
    train: TokenisedWindows
    validation: TokenisedWindows
    loss_sample: TokenisedWindows  # training windows whose loss is reported before and after training
    gate_windows: Windows  # validation windows the gate forecasts

    def describe(self) -> dict[str, Any]:
        return {
            "series": [f"{s.symbol} {s.timeframe}" for s in self.series],
            "cutoff": self.cutoff.isoformat(),
            "train_windows": len(self.train),
            "train_windows_with_events": int(self.train.has_events.sum()),
            "validation_windows": len(self.validation),
            "gate_windows": len(self.gate_windows),
            "train_windows_by_series": self.train.windows.describe(),
        }


def prepare_data(
    settings: Settings,
    engine: Engine,
    asset_class: str,
    as_of: datetime,
    cfg: FinetuneSettings,
    tokenizer: KronosTokenizer,
) -> FinetuneData:
    """Read, cut, split and tokenise; NotEnoughDataError when too few windows remain on either side."""
    device = torch.device(cfg.device)
    series = read_series(settings, engine, asset_class, as_of, cfg.timeframes, cfg.lookback + cfg.horizon)
    windows = build_windows(series, cfg.lookback, cfg.horizon, cfg.window_stride)
    if len(windows) == 0:
        raise NotEnoughDataError(
            f"asset class {asset_class!r}: no active instrument has {cfg.lookback + cfg.horizon} candles "
            f"({', '.join(cfg.timeframes)}) closed by {as_of.isoformat()}"
        )
    train_windows, validation_windows, cutoff = split_by_time(windows, cfg.validation_fraction)
    train_windows = train_windows.thin(cfg.max_train_windows)
    validation_windows = validation_windows.thin(cfg.max_validation_windows)
    if len(train_windows) < cfg.min_train_windows or len(validation_windows) < cfg.min_validation_windows:
        raise NotEnoughDataError(
            f"asset class {asset_class!r}: {len(train_windows)} training and {len(validation_windows)} validation "
            f"windows (need {cfg.min_train_windows} and {cfg.min_validation_windows})"
        )
    tokenizer.to(device)
    return FinetuneData(
        series=series,
        cutoff=cutoff,
        train=tokenise(tokenizer, train_windows, device),
        validation=tokenise(tokenizer, validation_windows, device),
        loss_sample=tokenise(tokenizer, train_windows.thin(cfg.loss_eval_windows), device),
        gate_windows=validation_windows.thin(cfg.gate_windows),
    )


@dataclass(frozen=True)
class FinetuneResult:
    """What one run produced and decided."""

    adapter_id: int
    asset_class: str
    base_model: str
    path: Path
    promoted: bool
    reason: str
    metrics: dict[str, Any]
    manifest: AdapterManifest | None = None  # what was published when it was promoted

    def __str__(self) -> str:
        return f"{self.asset_class}: adapter #{self.adapter_id} {self.reason}"


def _settings_with(settings: Settings, **overrides: Any) -> FinetuneSettings:
    changes = {k: v for k, v in overrides.items() if v is not None}
    return FinetuneSettings.model_validate({**settings.finetune.model_dump(), **changes})


def run_finetune(
    settings: Settings,
    engine: Engine,
    asset_class: str,
    base_model: str,
    *,
    as_of: datetime | None = None,
    epochs: int | None = None,
    lora_rank: int | None = None,
    timeframes: Sequence[str] | None = None,
    progress: bool = False,
    base: BaseCheckpoint | None = None,
) -> FinetuneResult:
    """Fine-tune ``base_model`` for ``asset_class`` on data as of ``as_of`` (default now); see the module
    docstring. ``epochs``, ``lora_rank`` and ``timeframes`` override ``settings.finetune``."""
    cfg = _settings_with(settings, epochs=epochs, lora_rank=lora_rank, timeframes=timeframes)
    as_of = as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    started = time.perf_counter()
    base = base or load_base(settings, base_model)
    if base.name != base_model:
        raise ValueError(f"base: the loaded checkpoint is {base.name!r}, not {base_model!r}")
    settings_window_check(cfg, base.spec.max_context)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    base.model.to(device)

    data = prepare_data(settings, engine, asset_class, as_of, cfg, base.tokenizer)

    peft_model = with_lora(base.model, cfg)
    model = adapted_model(peft_model).to(device)
    loss_before = mean_loss(model, data.loss_sample, cfg.batch_size, device)
    history = train(model, data.train, cfg, device, progress=progress)
    loss_after = mean_loss(model, data.loss_sample, cfg.batch_size, device)
    log.info(
        "%s %s: %d steps, %.1f windows/s, training loss %.4f -> %.4f",
        base_model, asset_class, history.steps, history.windows_per_second, loss_before, loss_after,
    )  # fmt: skip

    gate = apply_gate(engine, base, asset_class, model, data.validation, data.gate_windows, cfg)
    promoted, reason = gate.promoted, gate.reason

    trained_at = datetime.now(UTC)
    folder = adapters_root(settings) / base_model / asset_class / f"{as_of:%Y%m%dT%H%M}-{trained_at:%Y%m%dT%H%M%S}"
    metrics = {
        "asset_class": asset_class,
        "base_model": base_model,
        "base_version": base.version,
        "as_of": as_of.isoformat(),
        "trained_at": trained_at.isoformat(),
        "settings": cfg.model_dump(mode="json"),
        "data": data.describe(),
        "training": {
            "loss_before": loss_before,
            "loss_after": loss_after,
            "epoch_losses": history.epoch_losses,
            "steps": history.steps,
            "windows_seen": history.windows_seen,
            "seconds": round(history.seconds, 3),
            "windows_per_second": round(history.windows_per_second, 3),
        },
        "gate": gate.as_dict(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    save_adapter(peft_model, folder, metrics)
    adapter_id = insert_adapter(
        engine, asset_class=asset_class, base_model=base_model, path=str(folder.resolve()), as_of=as_of,
        metrics=metrics, promote=promoted, reason=reason, trained_at=trained_at,
    )  # fmt: skip
    log.info("%s %s: adapter #%d in %s %s", base_model, asset_class, adapter_id, folder, reason)
    # The row is the record and is written first; ManifestNotWritten (logged as an error) if it cannot be published.
    manifest = publish_promoted(settings, engine, get_adapter(engine, adapter_id)) if promoted else None
    return FinetuneResult(adapter_id, asset_class, base_model, folder, promoted, reason, metrics, manifest)


@dataclass(frozen=True)
class GateOutcome:
    """The gate's verdict on a candidate adapter, with both models' scores."""

    promoted: bool
    reason: str
    candidate: GateScores
    incumbent: GateScores
    incumbent_name: str
    incumbent_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.as_dict(),
            "incumbent": {**self.incumbent.as_dict(), "name": self.incumbent_name, "adapter_id": self.incumbent_id},
            "promoted": self.promoted,
            "reason": self.reason,
        }


def apply_gate(
    engine: Engine,
    base: BaseCheckpoint,
    asset_class: str,
    candidate_model: Kronos,
    validation: TokenisedWindows,
    gate_windows: Windows,
    cfg: FinetuneSettings,
) -> GateOutcome:
    """Score ``candidate_model`` and the incumbent (the promoted adapter of the class, else the base model) on
    the held-out windows and decide (``gate.decide``). Writes nothing."""
    device, max_context = torch.device(cfg.device), base.spec.max_context
    candidate = score(candidate_model, base.tokenizer, validation, gate_windows, cfg, max_context, device)
    incumbent_model, incumbent_name, incumbent_id = _incumbent(engine, base, asset_class)
    incumbent = score(incumbent_model, base.tokenizer, validation, gate_windows, cfg, max_context, device)
    promoted, reason = decide(candidate, incumbent, incumbent_name)
    return GateOutcome(promoted, reason, candidate, incumbent, incumbent_name, incumbent_id)


def _incumbent(engine: Engine, base: BaseCheckpoint, asset_class: str) -> tuple[Kronos, str, int | None]:
    """The model to beat: the promoted adapter of this class, else the base model (also when the promoted
    adapter's folder can no longer be loaded, which the name then says)."""
    record = promoted_adapter(engine, asset_class, base.name)
    if record is None:
        return base.model, f"the base model {base.name}", None
    try:
        return load_adapter(base.model, record.path, merge=False), f"promoted adapter #{record.id}", record.id
    except Exception as exc:
        log.warning("promoted adapter #%d (%s) cannot be loaded: %s", record.id, record.path, exc)
        return base.model, f"the base model {base.name} (promoted adapter #{record.id} failed to load: {exc})", None


@dataclass
class RollingResult:
    """The monthly job's outcome per asset class."""

    base_model: str
    as_of: datetime
    results: dict[str, FinetuneResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """job_runs status: 'failed' when no class trained and some failed, 'partial' when some failed."""
        if self.errors:
            return "partial" if self.results else "failed"
        return "ok" if self.results else "skipped"

    @property
    def counts(self) -> dict[str, int]:
        promoted = sum(r.promoted for r in self.results.values())
        return {"trained": len(self.results), "promoted": promoted, "skipped": len(self.skipped),
                "failed": len(self.errors)}  # fmt: skip

    def __str__(self) -> str:
        parts = [str(r) for r in self.results.values()]
        parts += [f"{ac}: skipped ({why})" for ac, why in self.skipped.items()]
        parts += [f"{ac}: failed ({why})" for ac, why in self.errors.items()]
        return "; ".join(parts) or "no active asset class"


def run_rolling_finetune(
    settings: Settings, engine: Engine, *, base_model: str, as_of: datetime | None = None
) -> RollingResult:
    """Fine-tune ``base_model`` for every asset class with active instruments (the scheduler's
    ``kronos-rolling-finetune``). A class without enough data is skipped; one that fails does not stop the
    others; missing base weights fail the whole run (``errors["base"]``) before anything is read."""
    as_of = as_of or datetime.now(UTC)
    outcome = RollingResult(base_model, as_of)
    try:
        base = load_base(settings, base_model)
    except (WeightsNotAvailableError, ValueError) as exc:
        outcome.errors["base"] = str(exc)
        log.error("fine-tune %s not run: %s", base_model, exc)
        return outcome
    for asset_class in sorted({i.asset_class for i in get_instruments(engine, active_only=True)}):
        try:
            outcome.results[asset_class] = run_finetune(
                settings, engine, asset_class, base_model, as_of=as_of, base=base
            )
        except NotEnoughDataError as exc:
            outcome.skipped[asset_class] = str(exc)
            log.info("fine-tune %s %s skipped: %s", base_model, asset_class, exc)
        except Exception as exc:
            outcome.errors[asset_class] = f"{type(exc).__name__}: {exc}"
            log.exception("fine-tune %s %s failed", base_model, asset_class)
    published = [r.manifest for r in outcome.results.values() if r.manifest is not None]
    if published:
        tell_inference_service(settings, published[-1])  # the newest manifest lists every promotion
    return outcome
