"""Fixtures of the fine-tune job tests: a tiny random Kronos (written by the test run) fine-tuned on real
sample candles (BTCUSDT 1h, a few hundred windows as of 2019-06-01) and the real sample calendar, in a
database of this package's own. The first run is shared by the package's modules."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
import uvicorn
from sqlalchemy.engine import Engine

from candlecast.config import ModelSpec, Settings
from candlecast.ingest.calendar import ingest_calendar
from candlecast.ingest.candles import ingest_candles
from candlecast.ingest.sample import load_sample_calendar, load_sample_manifest
from candlecast.jobs.finetune.run import (
    BaseCheckpoint,
    FinetuneData,
    FinetuneResult,
    load_base,
    prepare_data,
    run_finetune,
)
from candlecast.models.kronos import save_random_checkpoints
from candlecast.store import create_engine_for
from candlecast.store.adapters import AdapterRecord, get_adapter

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"
AS_OF = datetime(2019, 6, 1, tzinfo=UTC)
FINETUNE = {
    "timeframes": ["1h"], "lookback": 32, "horizon": 8, "window_stride": 8, "max_candles_per_series": 1200,
    "epochs": 2, "lr": 5e-3, "batch_size": 16, "lora_dropout": 0.0, "gate_windows": 8, "gate_sample_count": 8,
    "min_train_windows": 16, "min_validation_windows": 4,
}  # fmt: skip
NO_SERVICE = "http://127.0.0.1:9"  # the discard port: nothing answers, so no test tells a real service anything


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The test machine's cores are shared: one thread per op is faster and steadier than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="package")
def db(new_database: Callable[[], str]) -> Iterator[tuple[str, Engine]]:
    """The package's database: BTCUSDT hourly candles and the sample economic calendar."""
    url = new_database()
    engine = create_engine_for(url)
    (btc,) = [f for f in load_sample_manifest(SAMPLE) if (f.symbol, f.timeframe) == ("BTCUSDT", "1h")]
    ingest_candles(engine, btc.path, btc.symbol, btc.timeframe, btc.asset_class, source=btc.source)
    for calendar in load_sample_calendar(SAMPLE):
        ingest_calendar(engine, calendar)
    yield url, engine
    engine.dispose()


@pytest.fixture(scope="package")
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
        inference={"url": NO_SERVICE},
    )


@pytest.fixture(scope="package")
def base(settings: Settings) -> BaseCheckpoint:
    return load_base(settings, "kronos-tiny")


@pytest.fixture(scope="package")
def data(settings: Settings, db: tuple[str, Engine], base: BaseCheckpoint) -> FinetuneData:
    return prepare_data(settings, db[1], "crypto", AS_OF, settings.finetune, base.tokenizer)


@pytest.fixture(scope="package")
def first_run_and_row(
    settings: Settings, db: tuple[str, Engine], base: BaseCheckpoint
) -> tuple[FinetuneResult, AdapterRecord]:
    """The package's first fine-tune run and its ``model_adapters`` row as the run left it (later tests
    promote and re-promote it)."""
    result = run_finetune(settings, db[1], "crypto", "kronos-tiny", as_of=AS_OF, base=base)
    return result, get_adapter(db[1], result.adapter_id)


@pytest.fixture(scope="package")
def first_run(first_run_and_row: tuple[FinetuneResult, AdapterRecord]) -> FinetuneResult:
    return first_run_and_row[0]


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
