"""Promotion: the record first, then the manifest the model server reads; a running inference service with no
database serves a new promotion once told, and only for the promoted asset class."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import typer
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from candlecast.config import Settings, get_settings
from candlecast.inference.app import create_app
from candlecast.jobs.cli import register
from candlecast.jobs.finetune.promotion import ManifestNotWritten, promote, publish_promoted
from candlecast.jobs.finetune.run import FinetuneResult
from candlecast.models.finetune.manifest import MANIFEST_FILE, manifest_path, read_manifest
from candlecast.store.adapters import get_adapter, insert_adapter, promoted_adapter

from .conftest import NO_SERVICE, running

# Any attempt to reach this database fails at once (nothing listens on the discard port).
NOWHERE = "postgresql+psycopg://candlecast@127.0.0.1:9/nowhere"


def with_adapters_dir(settings: Settings, folder: Path, **update: Any) -> Settings:
    """``settings`` with the manifest (and new adapter folders) in ``folder``."""
    return settings.model_copy(
        update={"finetune": settings.finetune.model_copy(update={"adapters_dir": folder}), **update}
    )


def candles(symbol: str, n: int = 64, seed: int = 1) -> dict[str, Any]:
    """A random-walk hourly series as the inference service takes it."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    volume = rng.uniform(10, 100, n)
    rows = np.column_stack([open_, high, low, close, volume, volume * close]).tolist()
    timestamps = pd.date_range("2024-03-04", periods=n, freq="h", tz="UTC")
    return {"symbol": symbol, "timestamps": [t.isoformat() for t in timestamps], "ohlcv": rows}


def forecast_samples(url: str, symbols: tuple[str, ...]) -> tuple[str, dict[str, np.ndarray]]:
    """(model version, symbol -> sampled closes) of one seeded kronos-tiny request."""
    body = {"series": [candles(s) for s in symbols], "model": "kronos-tiny", "pred_len": 6, "sample_count": 8,
            "seed": 5}  # fmt: skip
    response = httpx.post(f"{url}/v1/forecast", json=body, timeout=120)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer["model_version"], {f["symbol"]: np.array(f["samples"]) for f in answer["forecasts"]}


def kronos_entry(url: str) -> dict[str, Any]:
    (entry,) = [m for m in httpx.get(f"{url}/models").json()["models"] if m["name"] == "kronos-tiny"]
    return entry


def served_adapter(url: str) -> int:
    adapters = kronos_entry(url)["adapters"]
    return adapters[0]["adapter_id"] if adapters else -1


def test_a_promotion_writes_the_manifest_from_the_record(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], tmp_path: Path
) -> None:
    local = with_adapters_dir(settings, tmp_path)
    assert read_manifest(manifest_path(local)) is None  # nothing published here yet
    promote(local, db[1], first_run.adapter_id, "promoted by the test", tell=False)

    row = get_adapter(db[1], first_run.adapter_id)
    manifest = read_manifest(tmp_path / MANIFEST_FILE)
    assert manifest is not None and manifest.written_at is not None
    entry = manifest.for_model("kronos-tiny")["crypto"]
    assert (entry.adapter_id, entry.path, entry.trained_at, entry.as_of) == (
        row.id,
        row.path,
        row.trained_at,
        row.as_of,
    )
    assert entry.path == str(first_run.path.resolve())
    assert entry.base_version == first_run.metrics["base_version"]
    assert entry.gate["crps"] == first_run.metrics["gate"]["candidate"]["crps"]
    assert entry.reason == "promoted by the test"
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # no temporary file left behind

    newer = insert_adapter(
        db[1], asset_class="crypto", base_model="kronos-tiny", path=row.path, as_of=None, metrics=row.metrics,
        promote=True, reason="re-promoted by the test",
    )  # fmt: skip
    publish_promoted(local, db[1])
    replaced = read_manifest(tmp_path / MANIFEST_FILE)
    assert replaced is not None and replaced.for_model("kronos-tiny")["crypto"].adapter_id == newer
    assert replaced.count() == 1  # one promoted adapter per (base model, asset class)


def test_a_promotion_that_cannot_write_the_manifest_says_so_and_keeps_the_record(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the adapters folder should be")
    caplog.set_level(logging.ERROR, logger="candlecast.jobs.finetune.promotion")
    with pytest.raises(ManifestNotWritten, match=rf"adapter #{first_run.adapter_id} .* is promoted in model_adapters"):
        promote(with_adapters_dir(settings, blocked), db[1], first_run.adapter_id, tell=False)
    assert any("could not be written" in r.getMessage() for r in caplog.records)
    promoted = promoted_adapter(db[1], "crypto", "kronos-tiny")
    assert promoted is not None and promoted.id == first_run.adapter_id  # the row was written first


def test_a_promotion_reaches_a_running_inference_service_that_has_no_database(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for name in ("DATABASE_URL", "CANDLECAST_DATABASE_URL"):
        monkeypatch.setenv(name, NOWHERE)
    service = with_adapters_dir(settings, tmp_path, database_url=NOWHERE)
    with running(create_app(service)) as url:
        entry = kronos_entry(url)
        assert entry["adapters"] == [] and "no manifest" in entry["adapters_status"]
        base_version, before = forecast_samples(url, ("BTCUSDT", "EURUSD"))

        job = with_adapters_dir(settings, tmp_path, inference=settings.inference.model_copy(update={"url": url}))
        promote(job, db[1], first_run.adapter_id, "promoted by the test")  # the job tells the service

        entry = kronos_entry(url)
        (adapter,) = entry["adapters"]
        assert (adapter["asset_class"], adapter["adapter_id"], adapter["loaded"]) == (
            "crypto",
            first_run.adapter_id,
            True,
        )
        assert adapter["path"] == str(first_run.path.resolve()) and adapter["reason"] == "promoted by the test"
        assert entry["version"] == f"{base_version}+crypto@{first_run.adapter_id}"
        version, after = forecast_samples(url, ("BTCUSDT", "EURUSD"))
    assert version == entry["version"]
    assert not np.array_equal(after["BTCUSDT"], before["BTCUSDT"])  # crypto: the adapted model
    assert np.array_equal(after["EURUSD"], before["EURUSD"])  # fx has no adapter: the base model


def test_a_running_service_loads_a_newly_published_manifest_when_told(
    first_run: FinetuneResult, settings: Settings, db: tuple[str, Engine], tmp_path: Path
) -> None:
    local = with_adapters_dir(settings, tmp_path)
    promote(local, db[1], first_run.adapter_id, tell=False)
    with running(create_app(local.model_copy(update={"database_url": NOWHERE}))) as url:
        assert served_adapter(url) == first_run.adapter_id  # read at start-up
        newer = insert_adapter(
            db[1], asset_class="crypto", base_model="kronos-tiny", path=str(first_run.path), as_of=None,
            metrics=first_run.metrics, promote=True, reason="re-promoted by the test",
        )  # fmt: skip
        publish_promoted(local, db[1])
        assert served_adapter(url) == first_run.adapter_id  # ... once ...
        assert httpx.post(f"{url}/admin/reload-adapters", timeout=60).status_code == 200
        assert served_adapter(url) == newer  # ... and again when told (from its own manifest file)

        bad = {"format": 1, "models": {"kronos-tiny": {"crypto": {"adapter_id": "seven", "path": "/x"}}}}
        refused = httpx.post(f"{url}/admin/reload-adapters", json=bad, timeout=60)
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "body.models.kronos-tiny.crypto.adapter_id"
        assert served_adapter(url) == newer  # a refused manifest changes nothing


def test_publish_only_writes_the_manifest_and_trains_nothing(
    first_run: FinetuneResult, db: tuple[str, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setenv("DATABASE_URL", db[0])
    monkeypatch.setenv("CANDLECAST_FINETUNE__ADAPTERS_DIR", str(tmp_path))
    monkeypatch.setenv("CANDLECAST_INFERENCE__URL", NO_SERVICE)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["finetune", "--publish-only"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "1 promoted adapter(s) published" in result.output and "not reachable" in result.output
    manifest = read_manifest(tmp_path / MANIFEST_FILE)
    promoted = promoted_adapter(db[1], "crypto", "kronos-tiny")
    assert manifest is not None and promoted is not None
    assert manifest.for_model("kronos-tiny")["crypto"].adapter_id == promoted.id
