"""A fine-tune run and the monthly job: training, the adapter record, the promotion gate, missing weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from candlecast.config import ModelSpec, Settings, get_settings
from candlecast.jobs.cli import register
from candlecast.jobs.finetune.run import BaseCheckpoint, FinetuneData, FinetuneResult, apply_gate
from candlecast.jobs.scheduler import run_job
from candlecast.models.finetune.adapter import EVENT_FILE, LORA_DIR, METRICS_FILE, load_adapter
from candlecast.store.adapters import AdapterRecord, list_adapters, promote_adapter, promoted_adapter
from candlecast.store.jobs import recent_job_runs

from .conftest import AS_OF


def scaled_lora(model: torch.nn.Module, factor: float) -> None:
    """Damage an adapter: multiply every LoRA B matrix and the event projection by ``factor``."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name or name.startswith("event_proj."):
                param.mul_(factor)


def test_a_short_fine_tune_lowers_the_training_loss_and_records_the_adapter(
    first_run_and_row: tuple[FinetuneResult, AdapterRecord],
) -> None:
    first_run, row = first_run_and_row
    training, data = first_run.metrics["training"], first_run.metrics["data"]
    assert training["loss_after"] < training["loss_before"]
    assert data["train_windows"] >= 100 and data["train_windows_with_events"] > 0
    # every window once per epoch, windows with events three times
    assert training["windows_seen"] == 2 * (data["train_windows"] + 2 * data["train_windows_with_events"])
    assert data["cutoff"] < AS_OF.isoformat()
    assert (first_run.path / LORA_DIR / "adapter_model.safetensors").is_file()
    assert (first_run.path / EVENT_FILE).is_file() and (first_run.path / METRICS_FILE).is_file()
    assert (row.asset_class, row.base_model, row.as_of) == ("crypto", "kronos-tiny", AS_OF)
    assert row.promoted == first_run.promoted and row.reason == first_run.reason
    assert row.metrics["gate"]["incumbent"]["name"] == "the base model kronos-tiny"
    assert first_run.reason.startswith("promoted" if first_run.promoted else "not promoted")
    assert (first_run.manifest is not None) == first_run.promoted  # published only when promoted


def test_the_gate_rejects_a_deliberately_damaged_adapter(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], base: BaseCheckpoint, data: FinetuneData
) -> None:
    promote_adapter(db[1], first_run.adapter_id, "promoted by the test")
    damaged = load_adapter(base.model, first_run.path, merge=False)
    scaled_lora(damaged, 50.0)
    outcome = apply_gate(db[1], base, "crypto", damaged, data.validation, data.gate_windows, settings.finetune)
    assert not outcome.promoted
    assert outcome.incumbent_id == first_run.adapter_id
    assert outcome.candidate.validation_loss > outcome.incumbent.validation_loss
    assert outcome.reason.startswith(f"not promoted: no better than promoted adapter #{first_run.adapter_id}")
    assert "validation loss" in outcome.reason
    # the same adapter, undamaged, is no better than itself either: the gate wants strictly better
    same = apply_gate(db[1], base, "crypto", load_adapter(base.model, first_run.path, merge=False),
                      data.validation, data.gate_windows, settings.finetune)  # fmt: skip
    assert not same.promoted


def test_the_monthly_job_fine_tunes_each_asset_class_against_the_promoted_adapter(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine]
) -> None:
    promote_adapter(db[1], first_run.adapter_id)
    shorter = settings.finetune.model_copy(update={"epochs": 1, "max_candles_per_series": 400})
    quick = settings.model_copy(update={"finetune": shorter})
    outcome = run_job(quick, db[1], "kronos-rolling-finetune", as_of=AS_OF)
    assert outcome.action == "ran" and outcome.status == "ok", outcome
    (run,) = recent_job_runs(db[1], "kronos-rolling-finetune", limit=1)
    assert run.counts["trained"] == 1 and run.counts["failed"] == 0
    newest = list_adapters(db[1], "crypto", "kronos-tiny", limit=1)[0]
    assert newest.id != first_run.adapter_id
    assert newest.metrics["gate"]["incumbent"]["adapter_id"] == first_run.adapter_id
    promoted = promoted_adapter(db[1], "crypto", "kronos-tiny")
    assert promoted is not None and promoted.id == (newest.id if newest.promoted else first_run.adapter_id)


def test_without_base_weights_the_command_says_so_and_trains_nothing(
    settings: Settings, db: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setenv("DATABASE_URL", db[0])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(
        "CANDLECAST_MODEL_SOURCES",
        '{"kronos-absent": {"name": "kronos-absent", "kind": "kronos", '
        '"model_source": "candlecast-tests/no-such-kronos", "tokenizer_source": "candlecast-tests/no-such-tokenizer"}}',
    )
    get_settings.cache_clear()
    before = len(list_adapters(db[1]))
    try:
        result = CliRunner().invoke(app, ["finetune", "--asset-class", "crypto", "--base", "kronos-absent"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "not trained" in result.output and "not available" in result.output
    assert len(list_adapters(db[1])) == before


def test_the_monthly_job_fails_with_the_reason_when_the_base_weights_are_missing(
    settings: Settings, db: tuple[str, Engine], tmp_path: Path
) -> None:
    absent = ModelSpec(
        name="kronos-absent", kind="kronos", model_source=str(tmp_path / "no-model"),
        tokenizer_source=str(tmp_path / "no-tokenizer"),
    )  # fmt: skip
    without = settings.model_copy(update={"models": "kronos-absent", "model_sources": {"kronos-absent": absent}})
    before = len(list_adapters(db[1]))
    outcome = run_job(without, db[1], "kronos-rolling-finetune", as_of=AS_OF)
    assert outcome.action == "ran" and outcome.status == "failed"
    (run,) = recent_job_runs(db[1], "kronos-rolling-finetune", limit=1)
    assert run.status == "failed" and "weights are not available" in run.errors["base"]
    assert len(list_adapters(db[1])) == before
