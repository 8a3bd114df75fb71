"""Provenance on every forecast row: recorded by the model and the batch job, carried over HTTP, stored,
shown, reproduced bit for bit by a re-run of the slot, and flagged when an input candle is rewritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings, ModelSpec
from candlecast.gateway.params import PredictionParams
from candlecast.gateway.payloads.forecasts import prediction_payload
from candlecast.jobs.batch import run_batch
from candlecast.jobs.scoring import run_scoring
from candlecast.models.base import SeriesInput
from candlecast.models.kronos_forecaster import KronosAdapter, KronosForecaster
from candlecast.models.provenance import CODE_VERSION, candles_sha256, file_sha256, stable_hash
from candlecast.store.candles import latest_candles, upsert_candles
from candlecast.store.predictions import latest_prediction

from .conftest import InferenceProcess, job_settings, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
AS_OF = datetime(2024, 3, 4, 10, tzinfo=UTC)
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def stored_rows(engine: Engine) -> dict[tuple[str, str], dict[str, str]]:
    """Every column of every forecast row but ``generated_at`` (when it was written), byte for byte: arrays as
    their binary send format, everything else as PostgreSQL's text (canonical for jsonb, exact for floats)."""
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'ml_predictions' AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        ).all()
        shown = [
            f"encode(array_send({name}), 'hex') AS {name}" if kind == "ARRAY" else f"{name}::text AS {name}"
            for name, kind in columns
            if name != "generated_at"
        ]
        rows = conn.execute(sa.text(f"SELECT {', '.join(shown)} FROM ml_predictions")).mappings().all()
    return {(r["symbol"], r["model_name"]): dict(r) for r in rows}


def test_the_provenance_record_round_trips_from_the_model_server_to_the_stored_row(
    engine: Engine, inference: InferenceProcess
) -> None:
    frames = load_market(engine, SYMBOLS, START, 120)
    settings = job_settings(inference.url)
    run_batch(settings, engine, "1h", "baseline", as_of=AS_OF, progress=False)
    p = latest_prediction(engine, "ETHUSDT", "baseline", "1h")
    assert p is not None and p.provenance is not None
    pv = p.provenance
    assert pv["model"] == "baseline" and pv["revision"] == p.model_version
    assert pv["checkpoint_sha256"] is None  # a statistical model loads no weights; its config defines it
    assert pv["config"]["model"]["config"]["method"]  # the baseline's own settings
    assert pv["config"]["job"]["pred_len"] == 4 and pv["config"]["job"]["sample_count"] == 16
    assert pv["config_sha256"] == stable_hash(pv["config"])
    assert pv["code_version"] == {"job": CODE_VERSION, "model_server": CODE_VERSION}
    assert pv["adapter"] is None
    assert pv["seed"] == p.event_context["seed"] and isinstance(pv["seed"], int)
    used = frames["ETHUSDT"][frames["ETHUSDT"]["ts"] + H <= pd.Timestamp(AS_OF)].tail(64)  # context_1h = 64
    assert pv["data_cutoff"]["instrument"] == used["ts"].iloc[-1].isoformat()
    ohlcv = used[["open", "high", "low", "close", "volume", "amount"]].to_numpy(np.float64)
    expected = candles_sha256(pd.DatetimeIndex(used["ts"]).as_unit("ns").asi8, ohlcv)
    assert pv["inputs"] == {"candles": 64, "first_candle": used["ts"].iloc[0].isoformat(), "sha256": expected}
    # the model-level part is what GET /models reports
    listed = {m["name"]: m for m in httpx.get(f"{inference.url}/models").json()["models"]}
    served = listed["baseline"]["provenance"]
    assert served["revision"] == pv["revision"] and served["config"] == pv["config"]["model"]


def test_a_rerun_of_the_slot_reproduces_every_stored_column_bit_for_bit_over_http_and_in_process(
    engine: Engine, inference: InferenceProcess
) -> None:
    load_market(engine, SYMBOLS, START, 120)
    run_batch(job_settings(inference.url), engine, "1h", "baseline", as_of=AS_OF, progress=False)
    first = stored_rows(engine)
    assert len(first) == 3 and all(row["provenance"] not in (None, "") for row in first.values())
    run_batch(job_settings(inference.url), engine, "1h", "baseline", as_of=AS_OF, progress=False)
    assert stored_rows(engine) == first  # over HTTP again
    run_batch(job_settings(), engine, "1h", "baseline", as_of=AS_OF, local=True, progress=False)
    assert stored_rows(engine) == first  # in-process: the same row, byte for byte
    # a different configuration is a different provenance, and a different row
    run_batch(job_settings(sample_count=8), engine, "1h", "baseline", as_of=AS_OF, local=True, progress=False)
    changed = stored_rows(engine)
    assert changed[("ETHUSDT", "baseline")]["provenance"] != first[("ETHUSDT", "baseline")]["provenance"]


def test_a_forecast_whose_input_candle_is_rewritten_afterwards_is_flagged(engine: Engine) -> None:
    load_market(engine, SYMBOLS, START, 120)
    settings = job_settings()
    run_batch(settings, engine, "1h", "baseline", as_of=AS_OF, local=True, progress=False)
    run_scoring(settings, engine, "1h", as_of=AS_OF + 2 * H)
    p = latest_prediction(engine, "ETHUSDT", "baseline", "1h")
    assert p is not None and p.provenance is not None and "inputs_changed" not in p.provenance
    cutoff = pd.Timestamp(p.provenance["data_cutoff"]["instrument"])

    def rewrite(symbol: str, ts: pd.Timestamp) -> None:
        frame = latest_candles(engine, symbol, "1h", 200, as_of=AS_OF + 10 * H)
        row = frame[frame["ts"] == ts].copy()
        row[["open", "high", "low", "close"]] *= 1.001
        with engine.begin() as conn:
            upsert_candles(conn, symbol, "1h", row.reset_index(drop=True))

    rewrite("BTCUSDT", cutoff + H)  # after the cutoff: not an input of the forecast
    rewrite("ETHUSDT", cutoff - 5 * H)  # inside the window it read
    run_scoring(settings, engine, "1h", as_of=AS_OF + 3 * H)
    eth = latest_prediction(engine, "ETHUSDT", "baseline", "1h")
    btc = latest_prediction(engine, "BTCUSDT", "baseline", "1h")
    assert eth is not None and btc is not None and eth.provenance is not None and btc.provenance is not None
    assert eth.provenance["inputs_changed"] is True
    assert eth.provenance["inputs_changed_detail"]["inputs_sha256_now"] != eth.provenance["inputs"]["sha256"]
    assert "inputs_changed" not in btc.provenance
    gw = GatewaySettings()
    answer = prediction_payload(engine, PredictionParams("ETHUSDT", "baseline", "1h", False, 0), gw)
    assert answer["provenance"]["inputs_changed"] is True
    untouched = prediction_payload(engine, PredictionParams("BTCUSDT", "baseline", "1h", False, 0), gw)
    assert untouched["provenance"]["inputs_changed"] is False
    assert untouched["provenance"]["seed"] == btc.provenance["seed"]


@pytest.fixture(scope="module")
def kronos_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from candlecast.models.kronos import save_random_checkpoints

    return save_random_checkpoints(tmp_path_factory.mktemp("kronos"), seed=0)


def test_kronos_records_the_sha256_of_the_weights_it_loaded_and_the_adapter_that_served_a_series(
    kronos_dirs: tuple[Path, Path],
) -> None:
    model_dir, tokenizer_dir = kronos_dirs
    spec = ModelSpec(
        name="kronos-tiny", kind="kronos", model_source=str(model_dir), tokenizer_source=str(tokenizer_dir),
        max_context=64,
    )  # fmt: skip
    forecaster = KronosForecaster.load(spec)
    assert forecaster.checkpoint_sha256 == {
        "model": file_sha256(model_dir / "model.safetensors"),
        "tokenizer": file_sha256(tokenizer_dir / "model.safetensors"),
    }
    assert forecaster.info().provenance["checkpoint_sha256"] == forecaster.checkpoint_sha256
    # an adapter serving crypto (here the base weights themselves, registered as adapter 7)
    forecaster.use_adapters([KronosAdapter("crypto", 7, forecaster.predictor)], {})
    frame = load_frame()
    series = [
        SeriesInput(timestamps=frame["ts"], ohlcv=frame.iloc[:, 1:].to_numpy(), symbol=s, asset_class=ac)
        for s, ac in (("BTCUSDT", "crypto"), ("SPY", "equity"))
    ]
    btc, spy = forecaster.forecast(series, pred_len=2, sample_count=2, seed=1)
    assert btc.provenance is not None and spy.provenance is not None
    assert btc.provenance["adapter"] == {"asset_class": "crypto", "adapter_id": 7}
    assert spy.provenance["adapter"] is None
    assert btc.provenance["seed"] == btc.seed and btc.provenance["revision"] == forecaster.version


def load_frame() -> pd.DataFrame:
    from .conftest import random_walk

    return random_walk(32, seed=3, start=START)


def test_event_inputs_record_the_cutoff_of_each_leader_and_of_the_calendar(
    engine: Engine, db_url: str, kronos_dirs: tuple[Path, Path]
) -> None:
    from candlecast.store.calendar import upsert_calendar

    load_market(engine, ["BTCUSDT", "SPY", "ETHUSDT"], START, 120)  # BTCUSDT and SPY are leaders
    release = START + 80 * H + timedelta(minutes=30)
    with engine.begin() as conn:
        upsert_calendar(conn, pd.DataFrame({
            "event_type": ["cpi", "fomc"], "scheduled_at": [release, START + 102 * H],
            "status": ["confirmed", "confirmed"], "actual": [3.0, None],
        }))  # fmt: skip
    model_dir, tokenizer_dir = kronos_dirs
    spec = ModelSpec(
        name="kronos-tiny", kind="kronos", model_source=str(model_dir), tokenizer_source=str(tokenizer_dir),
        max_context=64,
    )  # fmt: skip
    settings = job_settings(request_series_per_call=3, sample_count=4)
    settings = settings.model_copy(
        update={
            "models": "kronos-tiny", "model_sources": {"kronos-tiny": spec}, "database_url": db_url,
            "inference": settings.inference.model_copy(update={"load_adapters": False}),
        }
    )  # fmt: skip
    slot = START + 100 * H
    result = run_batch(settings, engine, "1h", "kronos-tiny", as_of=slot, local=True, progress=False)
    assert result.ok == ("BTCUSDT", "ETHUSDT", "SPY"), result.failed
    eth = latest_prediction(engine, "ETHUSDT", "kronos-tiny", "1h")
    assert eth is not None and eth.provenance is not None
    cutoff = eth.provenance["data_cutoff"]
    last_closed = (slot - H).isoformat()
    assert cutoff["instrument"] == last_closed
    assert cutoff["leaders"]["BTCUSDT"] == {"last_candle": last_closed, "timeframe": "1h"}
    assert cutoff["leaders"]["SPY"]["last_candle"] == last_closed
    assert cutoff["calendar"] == pd.Timestamp(release).isoformat()  # the FOMC meeting after the slot is not in it
    assert eth.provenance["checkpoint_sha256"]["model"] == file_sha256(model_dir / "model.safetensors")
    assert eth.provenance["config"]["job"]["events"] is not None  # the event settings shape this forecast
