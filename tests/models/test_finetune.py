"""The pure parts of fine-tuning Kronos: windows as the model reads them, the objective, adapter folders, the
promoted-adapters manifest, and a forecaster serving adapters per asset class.

Everything runs on a tiny random Kronos (written by the test run) and synthetic candles; nothing here
touches a database or a service (the job's own tests are in tests/jobs/finetune).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from candlecast.config import FinetuneSettings, ModelSpec, Settings
from candlecast.errors import InputError
from candlecast.events import channels as ch
from candlecast.models.base import SeriesInput
from candlecast.models.finetune.adapter import (
    EVENT_FILE,
    LORA_DIR,
    METRICS_FILE,
    adapted_model,
    load_adapter,
    save_adapter,
    with_lora,
)
from candlecast.models.finetune.data import CandleSeries, TokenisedWindows, Windows, tokenise
from candlecast.models.finetune.manifest import (
    MANIFEST_FILE,
    AdapterManifest,
    PromotedAdapter,
    parse_manifest,
    read_manifest,
    write_manifest,
)
from candlecast.models.finetune.train import epoch_order, teacher_forced_eval, train, window_logits
from candlecast.models.kronos import COLUMNS, Kronos, KronosPredictor, KronosTokenizer, _time_features
from candlecast.models.kronos_forecaster import KronosForecaster
from candlecast.models.registry import Registry

SRC = Path(__file__).resolve().parents[2] / "src" / "candlecast"
CPU = torch.device("cpu")
FINETUNE = FinetuneSettings(lookback=32, horizon=8, epochs=1, lr=5e-3, batch_size=16, lora_dropout=0.0)
TRAINED_AT = datetime(2019, 6, 1, 6, 30, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The test machine's cores are shared: one thread per op is faster and steadier than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def spec(tiny_kronos: tuple[str, str]) -> ModelSpec:
    model, tokenizer = tiny_kronos
    return ModelSpec(name="kronos-tiny", kind="kronos", model_source=model, tokenizer_source=tokenizer, max_context=64)


@pytest.fixture(scope="module")
def base(tiny_kronos: tuple[str, str]) -> tuple[Kronos, KronosTokenizer]:
    model, tokenizer = tiny_kronos
    return Kronos.from_pretrained(model), KronosTokenizer.from_pretrained(tokenizer)


def synthetic_series(n: int, events_at: tuple[int, ...] = (), symbol: str = "X") -> CandleSeries:
    """A random walk of hourly candles; the FOMC countdown is always set, CPI releases at ``events_at``."""
    timestamps = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    rng = np.random.default_rng(n)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    volume = rng.uniform(10, 100, n)
    values = np.column_stack(
        [open_, np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998, close, volume, volume * close]
    ).astype(np.float32)
    events = np.zeros((n, 20), dtype=np.float32)
    events[:, ch.DAYS_TO_FOMC_SIN] = 0.5  # countdowns are always set: they do not make an event window
    for i in events_at:
        events[i, ch.IS_CPI] = 1.0
    return CandleSeries(symbol, "1h", timestamps, values, _time_features(timestamps), events)


def windows_of(series: CandleSeries, lookback: int = 32, horizon: int = 8, stride: int = 8) -> Windows:
    starts = range(0, len(series.timestamps) - lookback - horizon + 1, stride)
    return Windows([series], np.array([(0, s) for s in starts], dtype=np.int64), lookback, horizon)


@pytest.fixture(scope="module")
def tokens(base: tuple[Kronos, KronosTokenizer]) -> TokenisedWindows:
    return tokenise(base[1], windows_of(synthetic_series(600, events_at=(45, 200, 380))), CPU)


def with_random_lora(model: Kronos, seed: int = 0) -> Any:
    """A peft-wrapped copy of ``model`` whose LoRA B matrices and event projection are random (not zero)."""
    peft_model = with_lora(model, FINETUNE)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in adapted_model(peft_model).named_parameters():
            if ".lora_B." in name or name.startswith("event_proj."):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return peft_model


@pytest.fixture(scope="module")
def adapter_folder(base: tuple[Kronos, KronosTokenizer], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_adapter(with_random_lora(base[0]), tmp_path_factory.mktemp("adapter") / "crypto", {"note": "test"})


def promoted(folder: Path, adapter_id: int = 7, base_version: str | None = None) -> PromotedAdapter:
    return PromotedAdapter(
        adapter_id=adapter_id, path=str(folder), base_version=base_version, trained_at=TRAINED_AT,
        gate={"validation_loss": 6.5, "crps": 0.02}, reason="promoted by the test",
    )  # fmt: skip


# -- windows -------------------------------------------------------------------------------------------------


def test_a_window_is_normalised_with_its_lookback_only() -> None:
    series = synthetic_series(200)
    windows = windows_of(series)
    before, _, _ = windows.arrays([3])
    start = int(windows.rows[3, 1])
    series.values[start + 32 : start + 40] *= 10  # a wild horizon
    after, _, _ = windows.arrays([3])
    np.testing.assert_array_equal(before[0, :32], after[0, :32])
    assert not np.array_equal(before[0, 32:], after[0, 32:])


def test_windows_with_events_are_seen_three_times_per_epoch() -> None:
    windows = windows_of(synthetic_series(200, events_at=(45,)))
    has_events = windows.has_events()
    assert 0 < has_events.sum() < len(windows)  # countdown channels alone do not count
    order = epoch_order(has_events, 3, np.random.default_rng(0))
    counts = np.bincount(order, minlength=len(windows))
    assert (counts[has_events] == 3).all() and (counts[~has_events] == 1).all()


# -- the objective and the adapter ---------------------------------------------------------------------------


def test_the_held_out_loss_never_sees_later_candles(
    base: tuple[Kronos, KronosTokenizer], tokens: TokenisedWindows
) -> None:
    model = base[0]
    s1, s2, stamps, events = tokens.batch(np.array([0]), CPU)
    later = s1.clone(), s2.clone()
    later[0][:, 20:] = (later[0][:, 20:] + 7) % 1024
    later[1][:, 20:] = (later[1][:, 20:] + 7) % 1024
    with teacher_forced_eval(model):
        a1, a2 = window_logits(model, s1, s2, stamps, events)
        b1, b2 = window_logits(model, *later, stamps, events)
    # logit t predicts candle t+1 from candles <= t (s2 also from the true s1 of t+1): t <= 18 is untouched
    torch.testing.assert_close(a1[:, :19], b1[:, :19], rtol=0, atol=1e-5)
    torch.testing.assert_close(a2[:, :19], b2[:, :19], rtol=0, atol=1e-5)
    model.eval()  # plain eval mode: the s2 layer attends to every position (why the loss needs care)
    with torch.no_grad():
        _, c2 = window_logits(model, *later, stamps, events)
    assert not torch.allclose(a2[:, :19], c2[:, :19], atol=1e-5)


def _sample_paths(model: torch.nn.Module, tokenizer: KronosTokenizer, series: CandleSeries) -> np.ndarray:
    df = pd.DataFrame(series.values[-48:-8], columns=list(COLUMNS))
    events = [np.random.default_rng(1).normal(size=(48, 20)).astype(np.float32)]
    predictor = KronosPredictor(model, tokenizer, device="cpu", max_context=64)  # type: ignore[arg-type]
    ts = series.timestamps
    return predictor.sample([df], [ts[-48:-8]], [ts[-8:]], 8, sample_count=4, seed=3, events=events).paths


def test_a_fresh_adapter_with_its_event_projection_at_zero_computes_exactly_the_base_model(
    base: tuple[Kronos, KronosTokenizer], tokens: TokenisedWindows
) -> None:
    base_model, tokenizer = base
    model = adapted_model(with_lora(base_model, FINETUNE))
    assert model.event_proj is not None and not model.event_proj.weight.any()
    assert base_model.event_proj is None  # the base itself is never modified
    s1, s2, stamps, _ = tokens.batch(np.arange(4), CPU)
    events = torch.randn(*s1.shape, 20)
    with teacher_forced_eval(model), teacher_forced_eval(base_model):
        expected = window_logits(base_model, s1, s2, stamps, events)
        for a, b in zip(window_logits(model, s1, s2, stamps, events), expected, strict=True):
            assert torch.equal(a, b)
    series = tokens.windows.series[0]
    assert np.array_equal(_sample_paths(model, tokenizer, series), _sample_paths(base_model, tokenizer, series))


def test_a_saved_adapter_reloads_to_identical_outputs(
    base: tuple[Kronos, KronosTokenizer], tokens: TokenisedWindows, tmp_path: Path
) -> None:
    base_model, tokenizer = base
    peft_model = with_lora(base_model, FINETUNE)
    model = adapted_model(peft_model)
    train(model, tokenise(tokenizer, tokens.windows.thin(32), CPU), FINETUNE, CPU)
    assert model.event_proj is not None and model.event_proj.weight.any()  # training moved it off zero
    save_adapter(peft_model, tmp_path / "adapter", {"note": "test"})
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {LORA_DIR, EVENT_FILE, METRICS_FILE}

    reloaded = load_adapter(base_model, tmp_path / "adapter", merge=False)
    merged = load_adapter(base_model, tmp_path / "adapter", merge=True)
    batch = tokens.batch(np.arange(8), CPU)
    with teacher_forced_eval(model), teacher_forced_eval(reloaded), teacher_forced_eval(merged):
        trained_logits = window_logits(model, *batch)
        for a, b in zip(trained_logits, window_logits(reloaded, *batch), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(trained_logits, window_logits(merged, *batch), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # merged weights: float rounding only
    series = tokens.windows.series[0]
    assert np.array_equal(_sample_paths(model, tokenizer, series), _sample_paths(reloaded, tokenizer, series))


# -- the promoted-adapters manifest --------------------------------------------------------------------------


def test_the_manifest_round_trips_and_a_bad_one_names_its_field(tmp_path: Path) -> None:
    manifest = AdapterManifest(models={"kronos-small": {"crypto": promoted(tmp_path / "a", base_version="sha256:1")}})
    path = tmp_path / "adapters" / MANIFEST_FILE
    assert read_manifest(path) is None  # nothing promoted yet
    written = write_manifest(path, manifest, written_at=TRAINED_AT)
    assert read_manifest(path) == written and written.written_at == TRAINED_AT
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert written.for_model("kronos-small")["crypto"].describe("crypto", loaded=True) == {
        "asset_class": "crypto", "adapter_id": 7, "path": str(tmp_path / "a"), "trained_at": TRAINED_AT.isoformat(),
        "as_of": None, "validation_loss": 6.5, "crps": 0.02, "loaded": True, "reason": "promoted by the test",
    }  # fmt: skip
    assert written.for_model("kronos-base") == {}

    data = json.loads(path.read_text())
    del data["models"]["kronos-small"]["crypto"]["trained_at"]
    with pytest.raises(InputError) as missing:
        parse_manifest(data, "body")
    assert missing.value.field == "body.models.kronos-small.crypto.trained_at"
    with pytest.raises(InputError, match="format"):
        parse_manifest({"format": 2, "models": {}})
    path.write_text('{"models": ')
    with pytest.raises(InputError, match="not valid JSON"):
        read_manifest(path)


def test_a_manifest_is_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / MANIFEST_FILE
    write_manifest(path, AdapterManifest(models={"kronos-small": {"crypto": promoted(tmp_path)}}))
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_manifest(path, AdapterManifest())
    assert path.read_bytes() == before  # readers still see the old manifest, whole
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # and no temporary file is left


# -- serving adapters ------------------------------------------------------------------------------------------


def test_a_kronos_forecaster_serves_each_series_with_the_adapter_of_its_asset_class(
    spec: ModelSpec, adapter_folder: Path, series: Callable[..., SeriesInput]
) -> None:
    plain = KronosForecaster.load(spec)
    adapted = KronosForecaster.load(spec)
    adapted.attach_adapters(
        {"crypto": promoted(adapter_folder, base_version=plain.base_version)}, {"BTCUSDT": "crypto"}
    )
    assert adapted.version == f"{plain.version}+crypto@7"
    inputs = [
        series(64, seed=1, symbol="BTCUSDT"),  # no class given: the map says crypto
        dataclasses.replace(series(64, seed=1, symbol="SOMECOIN"), asset_class="crypto"),  # its own class
        series(64, seed=1, symbol="EURUSD"),  # not crypto: the base model
        dataclasses.replace(series(64, seed=1, symbol="BTCUSDT"), asset_class="fx"),  # its own class wins
    ]
    got = adapted.forecast(inputs, pred_len=6, sample_count=8, seed=5)
    expected = plain.forecast(inputs, pred_len=6, sample_count=8, seed=5)
    same = [np.array_equal(a.samples, b.samples) for a, b in zip(got, expected, strict=True)]
    assert same == [False, False, True, True]
    (description,) = adapted.info().details["adapters"]  # type: ignore[misc]
    assert description["loaded"] is True and description["adapter_id"] == 7 and description["asset_class"] == "crypto"


def test_an_adapter_that_cannot_be_loaded_is_listed_with_the_reason_and_its_class_uses_the_base_model(
    spec: ModelSpec, adapter_folder: Path, tmp_path: Path
) -> None:
    forecaster = KronosForecaster.load(spec)
    forecaster.attach_adapters(
        {
            "crypto": promoted(adapter_folder, 7, base_version="sha256:other-weights"),
            "equity": promoted(tmp_path / "gone", 8, base_version=forecaster.base_version),
        },
        {},
    )
    assert forecaster.version == forecaster.base_version
    crypto, equity = forecaster.info().details["adapters"]  # type: ignore[misc]
    assert crypto["loaded"] is False and "trained on base version sha256:other-weights" in crypto["reason"]
    assert equity["loaded"] is False and "lacks" in equity["reason"]


def test_the_registry_gives_models_that_take_adapters_those_of_the_manifest(
    spec: ModelSpec, adapter_folder: Path, tmp_path: Path
) -> None:
    settings = Settings(
        models="kronos-tiny,baseline", model_sources={"kronos-tiny": spec}, finetune={"adapters_dir": tmp_path}
    )
    without = Registry.from_settings(settings)
    assert "no manifest" in str(without.get("kronos-tiny").info().details["adapters_status"])
    assert "adapters" not in without.get("baseline").info().details  # it does not take adapters

    version = KronosForecaster.load(spec).base_version
    write_manifest(
        tmp_path / MANIFEST_FILE,
        AdapterManifest(models={"kronos-tiny": {"crypto": promoted(adapter_folder, 7, version)}}),
    )
    assert Registry.from_settings(settings).get("kronos-tiny").version == f"{version}+crypto@7"
    off = settings.model_copy(update={"inference": settings.inference.model_copy(update={"load_adapters": False})})
    assert Registry.from_settings(off).get("kronos-tiny").version == version

    (tmp_path / MANIFEST_FILE).write_text("not json")
    broken = Registry.from_settings(settings).get("kronos-tiny")
    assert broken.version == version and "not read" in str(broken.info().details["adapters_status"])


def test_no_module_of_models_imports_the_store_the_jobs_or_a_server() -> None:
    forbidden = ("candlecast.store", "candlecast.jobs", "candlecast.inference", "candlecast.gateway", "candlecast.cli")
    found = []
    for path in sorted((SRC / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.relative_to(SRC)}: {n}" for n in names if n.startswith(forbidden)]
    assert found == []
