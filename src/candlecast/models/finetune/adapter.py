"""Adapter folders: LoRA (through peft) on a copy of the base Kronos plus its event projection.

A folder holds::

    lora/adapter_config.json, lora/adapter_model.safetensors   peft's own format (rank, alpha, targets)
    event_proj.safetensors                                     the 20 -> d_model projection ("weight", "bias")
    metrics.json                                               what the run measured and decided

The base checkpoint is never copied or changed: ``load_adapter`` rebuilds the adapted model from the base
weights and the folder. A fresh adapter (LoRA B matrices and the event projection at zero, as initialised)
computes exactly what the base model computes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from candlecast.config import FinetuneSettings
from candlecast.models.kronos import Kronos

__all__ = [
    "EVENT_FILE",
    "LORA_DIR",
    "METRICS_FILE",
    "adapted_model",
    "load_adapter",
    "read_metrics",
    "save_adapter",
    "with_lora",
]

LORA_DIR = "lora"
EVENT_FILE = "event_proj.safetensors"
METRICS_FILE = "metrics.json"


def with_lora(base: Kronos, cfg: FinetuneSettings) -> PeftModel:
    """A trainable copy of ``base``: LoRA on ``cfg.lora_targets`` (every attention layer whose projection has
    that name, the s2 layer's included) plus a zero event projection; everything else frozen."""
    model = copy.deepcopy(base)
    model.attach_event_projection()
    config = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; its scaling alpha / r takes a float
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
    )
    peft_model = get_peft_model(model, config)  # freezes every parameter but the LoRA matrices
    assert model.event_proj is not None
    model.event_proj.requires_grad_(True)
    return peft_model


def adapted_model(peft_model: PeftModel) -> Kronos:
    """The Kronos inside a peft wrapper (its attention projections carry the LoRA layers)."""
    inner = peft_model.get_base_model()
    assert isinstance(inner, Kronos)
    return inner


def save_adapter(peft_model: PeftModel, folder: Path, metrics: dict[str, Any]) -> Path:
    """Write the LoRA weights, the event projection and ``metrics`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(folder / LORA_DIR))
    (folder / LORA_DIR / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
    event_proj = adapted_model(peft_model).event_proj
    assert event_proj is not None
    save_file({k: v.detach().cpu().contiguous() for k, v in event_proj.state_dict().items()}, str(folder / EVENT_FILE))
    write_metrics(folder, metrics)
    return folder


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True, default=str))


def read_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_adapter(base: Kronos, folder: str | Path, *, merge: bool = True) -> Kronos:
    """``base`` with the adapter in ``folder`` applied, in eval mode; ``base`` itself is left unchanged.

    ``merge=True`` folds the LoRA product into the weights (plain Linear layers: inference runs at the base
    model's speed; equal to the unmerged model up to float rounding). ``merge=False`` keeps the LoRA layers,
    which computes exactly what the trained model computed.
    """
    folder = Path(folder)
    missing = [name for name in (LORA_DIR, EVENT_FILE) if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"adapter folder {folder} lacks {', '.join(missing)}")
    model = copy.deepcopy(base)
    event_proj = model.attach_event_projection()
    event_proj.load_state_dict(load_file(str(folder / EVENT_FILE), device=str(model.norm.weight.device)))
    peft_model = PeftModel.from_pretrained(model, str(folder / LORA_DIR), is_trainable=False)
    loaded = peft_model.merge_and_unload() if merge else peft_model.get_base_model()
    assert isinstance(loaded, Kronos)
    return loaded.eval()
