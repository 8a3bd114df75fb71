"""LoRA fine-tuning of Kronos: windows, objective, adapter round trip, the promotion gate and serving.

A tiny random Kronos (written by the test run) is fine-tuned on real sample candles (BTCUSDT 1h, a few
hundred windows as of 2019-06-01) and the real sample calendar, in a database of this module's own.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import typer
import uvicorn
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from candlecast.config import FinetuneSettings, ModelSpec, Settings, get_settings
from candlecast.events import channels as ch
from candlecast.inference.app import create_app
from candlecast.ingest.calendar import ingest_calendar
from candlecast.ingest.candles import ingest_candles
from candlecast.ingest.sample import load_sample_calendar, load_sample_manifest
from candlecast.jobs.cli import register
from candlecast.jobs.scheduler import run_job
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
from candlecast.models.finetune.run import (
    BaseCheckpoint,
    FinetuneData,
    FinetuneResult,
    apply_gate,
    load_base,
    prepare_data,
    run_finetune,
)
from candlecast.models.finetune.train import epoch_order, teacher_forced_eval, train, window_logits
from candlecast.models.finetune.windows import CandleSeries, build_windows, split_by_time, tokenise
from candlecast.models.kronos import COLUMNS, KronosPredictor, save_random_checkpoints
from candlecast.models.registry import Registry
from candlecast.store import create_engine_for
from candlecast.store.adapters import get_adapter, insert_adapter, list_adapters, promote_adapter, promoted_adapter
from candlecast.store.jobs import recent_job_runs

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
AS_OF = datetime(2019, 6, 1, tzinfo=UTC)
CPU = torch.device("cpu")
FINETUNE = {
    "timeframes": ["1h"], "lookback": 32, "horizon": 8, "window_stride": 8, "max_candles_per_series": 1200,
    "epochs": 2, "lr": 5e-3, "batch_size": 16, "lora_dropout": 0.0, "gate_windows": 8, "gate_sample_count": 8,
    "min_train_windows": 16, "min_validation_windows": 4,
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The test machine's cores are shared: one thread per op is faster and steadier than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def db(new_database: Callable[[], str]) -> Iterator[tuple[str, Engine]]:
    """This module's database: BTCUSDT hourly candles and the sample economic calendar."""
    url = new_database()
    engine = create_engine_for(url)
    (btc,) = [f for f in load_sample_manifest(SAMPLE) if (f.symbol, f.timeframe) == ("BTCUSDT", "1h")]
    ingest_candles(engine, btc.path, btc.symbol, btc.timeframe, btc.asset_class, source=btc.source)
    for calendar in load_sample_calendar(SAMPLE):
        ingest_calendar(engine, calendar)
    yield url, engine
    engine.dispose()


@pytest.fixture(scope="module")
def settings(db: tuple[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    model, tokenizer = save_random_checkpoints(tmp_path_factory.mktemp("kronos-tiny"), seed=0)
    spec = ModelSpec(
        name="kronos-tiny", kind="kronos", model_source=str(model), tokenizer_source=str(tokenizer), max_context=64
    )
    return Settings(
        database_url=db[0],
        models="kronos-tiny",
        model_sources={"kronos-tiny": spec},
        data_dir=tmp_path_factory.mktemp("var"),
        finetune=FINETUNE,
    )


@pytest.fixture(scope="module")
def base(settings: Settings) -> BaseCheckpoint:
    return load_base(settings, "kronos-tiny")


@pytest.fixture(scope="module")
def data(settings: Settings, db: tuple[str, Engine], base: BaseCheckpoint) -> FinetuneData:
    return prepare_data(settings, db[1], "crypto", AS_OF, settings.finetune, base.tokenizer)


@pytest.fixture(scope="module")
def first_run(settings: Settings, db: tuple[str, Engine], base: BaseCheckpoint) -> FinetuneResult:
    return run_finetune(settings, db[1], "crypto", "kronos-tiny", as_of=AS_OF, base=base)


def synthetic_series(n: int, events_at: tuple[int, ...] = (), symbol: str = "X") -> CandleSeries:
    timestamps = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    rng = np.random.default_rng(n)
    values = np.abs(rng.normal(100, 5, (n, 6))).astype(np.float32)
    events = np.zeros((n, 20), dtype=np.float32)
    events[:, ch.DAYS_TO_FOMC_SIN] = 0.5  # countdowns are always set: they do not make an event window
    for i in events_at:
        events[i, ch.IS_CPI] = 1.0
    stamps = np.zeros((n, 5), dtype=np.float32)
    return CandleSeries(symbol, "1h", timestamps, values, stamps, events)


def scaled_lora(model: torch.nn.Module, factor: float) -> None:
    """Damage an adapter: multiply every LoRA B matrix and the event projection by ``factor``."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name or name.startswith("event_proj."):
                param.mul_(factor)


# -- windows -------------------------------------------------------------------------------------------------


def test_windows_split_by_time_never_share_a_candle_and_the_newest_ends_on_the_last_candle() -> None:
    series = [synthetic_series(500), synthetic_series(300, symbol="Y")]
    windows = build_windows(series, lookback=32, horizon=8, stride=8)
    _, last = windows.bounds_ns()
    assert last.max() == series[0].timestamps.asi8[-1]
    train_windows, validation, cutoff = split_by_time(windows, 0.25)
    train_first, train_last = train_windows.bounds_ns()
    val_first, _ = validation.bounds_ns()
    assert train_last.max() < cutoff.value <= val_first.min()
    assert len(train_windows) > 2 * len(validation) > 0
    assert len(train_windows) + len(validation) <= len(windows)  # windows straddling the cutoff are dropped


def test_a_window_is_normalised_with_its_lookback_only() -> None:
    series = synthetic_series(200)
    windows = build_windows([series], lookback=32, horizon=8, stride=8)
    before, _, _ = windows.arrays([3])
    start = int(windows.rows[3, 1])
    series.values[start + 32 : start + 40] *= 10  # a wild horizon
    after, _, _ = windows.arrays([3])
    np.testing.assert_array_equal(before[0, :32], after[0, :32])
    assert not np.array_equal(before[0, 32:], after[0, 32:])


def test_windows_with_events_are_seen_three_times_per_epoch() -> None:
    windows = build_windows([synthetic_series(200, events_at=(45,))], lookback=32, horizon=8, stride=8)
    has_events = windows.has_events()
    assert 0 < has_events.sum() < len(windows)  # countdown channels alone do not count
    order = epoch_order(has_events, 3, np.random.default_rng(0))
    counts = np.bincount(order, minlength=len(windows))
    assert (counts[has_events] == 3).all() and (counts[~has_events] == 1).all()


# -- the objective and the adapter ---------------------------------------------------------------------------


def test_the_held_out_loss_never_sees_later_candles(base: BaseCheckpoint, data: FinetuneData) -> None:
    s1, s2, stamps, events = data.validation.batch(np.array([0]), CPU)
    later = s1.clone(), s2.clone()
    later[0][:, 20:] = (later[0][:, 20:] + 7) % 1024
    later[1][:, 20:] = (later[1][:, 20:] + 7) % 1024
    with teacher_forced_eval(base.model):
        a1, a2 = window_logits(base.model, s1, s2, stamps, events)
        b1, b2 = window_logits(base.model, *later, stamps, events)
    # logit t predicts candle t+1 from candles <= t (s2 also from the true s1 of t+1): t <= 18 is untouched
    torch.testing.assert_close(a1[:, :19], b1[:, :19], rtol=0, atol=1e-5)
    torch.testing.assert_close(a2[:, :19], b2[:, :19], rtol=0, atol=1e-5)
    base.model.eval()  # plain eval mode: the s2 layer attends to every position (why the loss needs care)
    with torch.no_grad():
        _, c2 = window_logits(base.model, *later, stamps, events)
    assert not torch.allclose(a2[:, :19], c2[:, :19], atol=1e-5)


def test_a_fresh_adapter_with_its_event_projection_at_zero_computes_exactly_the_base_model(
    base: BaseCheckpoint, data: FinetuneData
) -> None:
    model = adapted_model(with_lora(base.model, FinetuneSettings(**FINETUNE)))
    assert model.event_proj is not None and not model.event_proj.weight.any()
    assert base.model.event_proj is None  # the base itself is never modified
    s1, s2, stamps, _ = data.validation.batch(np.arange(4), CPU)
    events = torch.randn(*s1.shape, 20)
    with teacher_forced_eval(model), teacher_forced_eval(base.model):
        expected = window_logits(base.model, s1, s2, stamps, events)
        for a, b in zip(window_logits(model, s1, s2, stamps, events), expected, strict=True):
            assert torch.equal(a, b)
    assert np.array_equal(_sample_paths(model, base, data), _sample_paths(base.model, base, data))


def _sample_paths(model: torch.nn.Module, base: BaseCheckpoint, data: FinetuneData) -> np.ndarray:
    series = data.series[0]
    df = pd.DataFrame(series.values[-48:-8], columns=list(COLUMNS))
    events = [np.random.default_rng(1).normal(size=(48, 20)).astype(np.float32)]
    predictor = KronosPredictor(model, base.tokenizer, device="cpu", max_context=64)  # type: ignore[arg-type]
    ts = series.timestamps
    return predictor.sample([df], [ts[-48:-8]], [ts[-8:]], 8, sample_count=4, seed=3, events=events).paths


def test_a_saved_adapter_reloads_to_identical_outputs(base: BaseCheckpoint, data: FinetuneData, tmp_path: Path) -> None:
    cfg = FinetuneSettings(**{**FINETUNE, "epochs": 1})
    peft_model = with_lora(base.model, cfg)
    model = adapted_model(peft_model)
    train(model, tokenise(base.tokenizer, data.train.windows.thin(32), CPU), cfg, CPU)
    assert model.event_proj is not None and model.event_proj.weight.any()  # training moved it off zero
    save_adapter(peft_model, tmp_path / "adapter", {"note": "test"})
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {LORA_DIR, EVENT_FILE, METRICS_FILE}

    reloaded = load_adapter(base.model, tmp_path / "adapter", merge=False)
    merged = load_adapter(base.model, tmp_path / "adapter", merge=True)
    batch = data.validation.batch(np.arange(8), CPU)
    with teacher_forced_eval(model), teacher_forced_eval(reloaded), teacher_forced_eval(merged):
        trained_logits = window_logits(model, *batch)
        for a, b in zip(trained_logits, window_logits(reloaded, *batch), strict=True):
            assert torch.equal(a, b)
        for a, b in zip(trained_logits, window_logits(merged, *batch), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # merged weights: float rounding only
    assert np.array_equal(_sample_paths(model, base, data), _sample_paths(reloaded, base, data))


# -- a run, the gate and serving -----------------------------------------------------------------------------


def test_a_short_fine_tune_lowers_the_training_loss_and_records_the_adapter(
    first_run: FinetuneResult, db: tuple[str, Engine]
) -> None:
    training, data = first_run.metrics["training"], first_run.metrics["data"]
    assert training["loss_after"] < training["loss_before"]
    assert data["train_windows"] >= 100 and data["train_windows_with_events"] > 0
    # every window once per epoch, windows with events three times
    assert training["windows_seen"] == 2 * (data["train_windows"] + 2 * data["train_windows_with_events"])
    assert data["cutoff"] < AS_OF.isoformat()
    assert (first_run.path / LORA_DIR / "adapter_model.safetensors").is_file()
    assert (first_run.path / EVENT_FILE).is_file() and (first_run.path / METRICS_FILE).is_file()
    row = get_adapter(db[1], first_run.adapter_id)
    assert (row.asset_class, row.base_model, row.as_of) == ("crypto", "kronos-tiny", AS_OF)
    assert row.promoted == first_run.promoted and row.reason == first_run.reason
    assert row.metrics["gate"]["incumbent"]["name"] == "the base model kronos-tiny"
    assert first_run.reason.startswith("promoted" if first_run.promoted else "not promoted")


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


def test_the_promoted_adapter_serves_its_asset_class_and_is_listed_in_models(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], series: Callable[..., SeriesInput]
) -> None:
    promote_adapter(db[1], first_run.adapter_id)
    adapted = Registry.from_settings(settings).get("kronos-tiny")
    plain = Registry.from_settings(settings.model_copy(update={"database_url": None})).get("kronos-tiny")
    assert adapted.version == f"{plain.version}+crypto@{first_run.adapter_id}"
    btc, eur = series(64, seed=1, symbol="BTCUSDT"), series(64, seed=1, symbol="EURUSD")
    a_btc, a_eur = adapted.forecast([btc, eur], pred_len=6, sample_count=8, seed=5)
    p_btc, p_eur = plain.forecast([btc, eur], pred_len=6, sample_count=8, seed=5)
    assert np.array_equal(a_eur.samples, p_eur.samples)  # fx has no adapter: the base model
    assert not np.array_equal(a_btc.samples, p_btc.samples)  # crypto: the adapted model

    with running(create_app(settings)) as url:
        models = httpx.get(f"{url}/models").json()["models"]
    (entry,) = [m for m in models if m["name"] == "kronos-tiny"]
    (adapter,) = entry["adapters"]
    assert adapter["asset_class"] == "crypto" and adapter["adapter_id"] == first_run.adapter_id
    assert adapter["loaded"] is True and adapter["path"] == str(first_run.path.resolve())
    assert entry["version"].endswith(f"+crypto@{first_run.adapter_id}")


def test_a_running_service_loads_a_new_promotion_when_told(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine]
) -> None:
    def served_adapter(url: str) -> int:
        (entry,) = [m for m in httpx.get(f"{url}/models").json()["models"] if m["name"] == "kronos-tiny"]
        return entry["adapters"][0]["adapter_id"] if entry["adapters"] else -1

    with running(create_app(settings)) as url:
        before = served_adapter(url)
        newer = insert_adapter(
            db[1], asset_class="crypto", base_model="kronos-tiny", path=str(first_run.path), as_of=None,
            metrics=first_run.metrics, promote=True, reason="re-promoted by the test",
        )  # fmt: skip
        assert served_adapter(url) == before  # read once at start-up ...
        reloaded = httpx.post(f"{url}/admin/reload-adapters", timeout=60)
        assert reloaded.status_code == 200
        assert served_adapter(url) == newer != before  # ... and again when told


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class running:  # noqa: N801 - used like a function: ``with running(app) as url``
    """Serve an ASGI app with uvicorn in a thread on a free port."""

    def __init__(self, app: object) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.server.config.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
