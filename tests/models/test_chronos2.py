"""Chronos-2 behind the Forecaster interface, on a tiny randomly initialised Chronos-2 written by the test run.

The checkpoint is built from a config (no download), saved with ``save_pretrained`` and loaded back through
``Chronos2Forecaster.load``, so every test runs the real chronos pipeline code. A random model's quantiles mean
nothing (they even cross); the tests check shapes, the mapping of inputs and outputs, and determinism.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from candlecast.config import ModelSpec, Settings
from candlecast.errors import ModelUnavailableError, WeightsNotAvailableError
from candlecast.events import channels as ch
from candlecast.models.base import SeriesInput
from candlecast.models.chronos2 import Chronos2Forecaster, chronos_input, quantile_paths
from candlecast.models.registry import Registry

MakeSeries = Callable[..., SeriesInput]
# The published head's levels; the tiny model gets the same head.
LEVELS = [0.01, 0.05] + [round(0.1 + 0.05 * i, 2) for i in range(17)] + [0.95, 0.99]
ONE_PASS = 64  # max_output_patches 4 x patch 16: longer horizons take chronos' unrolling path


def save_tiny_chronos2(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised Chronos-2 of 67k parameters, written as config.json + model.safetensors."""
    import torch
    from chronos import Chronos2Model, Chronos2Pipeline
    from chronos.chronos2 import Chronos2CoreConfig

    config = Chronos2CoreConfig(
        d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
        chronos_config={
            "context_length": 512, "input_patch_size": 16, "input_patch_stride": 16, "output_patch_size": 16,
            "max_output_patches": ONE_PASS // 16, "quantiles": LEVELS, "use_reg_token": True, "use_arcsinh": True,
        },
        architectures=["Chronos2Model"], chronos_pipeline_class="Chronos2Pipeline",
    )  # fmt: skip
    torch.manual_seed(seed)
    Chronos2Pipeline(Chronos2Model(config).eval()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chronos2(tmp_path_factory.mktemp("chronos2-tiny"))


def tiny_spec(folder: Path, name: str = "chronos-tiny", max_context: int = 256) -> ModelSpec:
    return ModelSpec(name=name, kind="chronos2", model_source=str(folder), max_context=max_context)


@pytest.fixture(scope="module")
def chronos(tiny_dir: Path) -> Chronos2Forecaster:
    return Chronos2Forecaster.load(tiny_spec(tiny_dir))


def own_knots(model: Chronos2Forecaster, task: dict[str, object], pred_len: int) -> np.ndarray:
    """The oracle: the pipeline called directly, its (21, H) knots sorted at every step."""
    (prediction,) = model.pipeline.predict([task], prediction_length=pred_len)
    return np.sort(prediction[0].double().numpy(), axis=0)


def with_events(s: SeriesInput, events: np.ndarray | None, future: np.ndarray | None = None) -> SeriesInput:
    return SeriesInput(
        timestamps=s.timestamps, ohlcv=s.ohlcv, symbol=s.symbol, timeframe=s.timeframe, calendar=s.calendar,
        events=events, future_events=future,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Loading


def test_a_local_checkpoint_loads_with_its_capabilities_size_and_weights_hash(chronos: Chronos2Forecaster) -> None:
    info = chronos.info()
    assert info.kind == "chronos2" and info.version.startswith("sha256:")
    assert info.parameters == 66_688 and info.context_length == 256 and info.device == "cpu"
    assert info.uses_events and not info.gives_samples and not info.gives_ohlc and not info.takes_adapters
    assert info.details["quantile_head"] == LEVELS


def test_the_context_is_capped_by_the_models_own_context_length(tiny_dir: Path) -> None:
    assert Chronos2Forecaster.load(tiny_spec(tiny_dir, max_context=4096)).max_context == 512


def test_a_missing_folder_is_reported_unavailable_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(WeightsNotAvailableError, match="no-such-checkpoint.*neither a checkpoint folder"):
        Chronos2Forecaster.load(tiny_spec(missing))
    registry = Registry.from_settings(Settings(models="chronos-x", model_sources={"chronos-x": tiny_spec(missing)}))
    with pytest.raises(ModelUnavailableError, match="no-such-checkpoint") as info:
        registry.get("chronos-x")
    assert registry.entry("chronos-x").kind == "chronos2" and info.value.reason == registry.entry("chronos-x").reason


def test_a_folder_without_weights_or_of_another_model_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_dir / "config.json", partial)
    with pytest.raises(WeightsNotAvailableError, match="lacks model.safetensors"):
        Chronos2Forecaster.load(tiny_spec(partial))
    other = tmp_path / "other"
    shutil.copytree(tiny_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "chronos_pipeline_class": "ChronosBoltPipeline"}))
    with pytest.raises(ValueError, match="not a Chronos-2 checkpoint.*ChronosBoltPipeline"):
        Chronos2Forecaster.load(tiny_spec(other))


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hub unreachable, and an empty hub cache in ``tmp_path``."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_the_published_model_offline_without_a_cached_copy_is_unavailable_with_the_reason(offline_hub: Path) -> None:
    spec = Settings().model_spec("chronos-2")
    assert spec.kind == "chronos2" and spec.model_source == "amazon/chronos-2"
    with pytest.raises(WeightsNotAvailableError, match="'amazon/chronos-2' \\(revision main\\) are not available"):
        Chronos2Forecaster.load(spec, cache_dir=offline_hub)
    registry = Registry.from_settings(Settings(models="chronos-2,baseline"), warn_unavailable=False)
    assert registry.default_name() == "baseline"
    with pytest.raises(ModelUnavailableError, match="amazon/chronos-2.*not available"):
        registry.get("chronos-2")


def test_the_published_model_is_served_from_the_hub_cache_offline(tiny_dir: Path, offline_hub: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "models--amazon--chronos-2"  # the hub cache layout
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = Chronos2Forecaster.load(Settings().model_spec("chronos-2"))
    assert loaded.name == "chronos-2" and loaded.version == "amazon/chronos-2@0123456789ab"


# ----------------------------------------------------------------------------------------------------------
# Forecasts


def test_forecast_gives_quantiles_and_paths_on_the_trading_calendar(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    spy = series(n=60, seed=1, symbol="SPY", timeframe="1d", calendar="XNYS")
    f = chronos.forecast([spy], 3, 12, (0.9, 0.1, 0.5), seed=5)[0]
    assert f.samples.shape == (12, 3) and f.quantiles.shape == (3, 3) and f.ohlc_samples is None
    assert np.isfinite(f.samples).all() and np.isfinite(f.quantiles).all()
    assert (f.p10 <= f.p50).all() and (f.p50 <= f.p90).all()  # monotone in level, in the caller's level order
    assert f.quantile_levels == (0.9, 0.1, 0.5) and f.seed is not None and f.model_name == "chronos-tiny"
    # 2024-03-04 + 59 days is Thursday 2024-05-02; NYSE sessions follow: Friday, then Monday and Tuesday.
    assert spy.timestamps[-1] == pd.Timestamp("2024-05-02", tz="UTC")
    assert list(f.target_timestamps) == list(pd.to_datetime(["2024-05-03", "2024-05-06", "2024-05-07"], utc=True))


def test_the_quantiles_are_the_models_own_knots_interpolated_at_the_requested_levels(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    from chronos.utils import interpolate_quantiles

    s = series(n=80, seed=2)
    levels = (0.005, 0.1, 0.33, 0.5, 0.9, 0.975, 0.995)  # on the head, between its levels, beyond its ends
    f = chronos.forecast([s], 6, 4, levels, seed=1)[0]
    knots = own_knots(chronos, {"target": s.close}, 6)  # (21, 6)
    import torch

    expected = interpolate_quantiles(list(levels), LEVELS, torch.from_numpy(knots.T)).numpy().T  # (7, 6)
    np.testing.assert_allclose(f.quantiles, expected, rtol=1e-6)
    np.testing.assert_array_equal(f.p50, knots[LEVELS.index(0.5)])
    np.testing.assert_array_equal(f.quantile(0.005), knots[0])  # clamped to the head's lowest level


def test_the_paths_are_comonotone_stratified_draws_from_the_same_quantile_function(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    s = series(n=80, seed=3)
    f = chronos.forecast([s], 8, 40, (0.1, 0.5, 0.9), seed=9)[0]
    by_first_step = f.samples[np.argsort(f.samples[:, 0])]
    assert (np.diff(by_first_step, axis=0) >= 0).all()  # one level per path: paths never cross
    # each of the 40 slices of (0, 1) holds one path's level: exactly 4 paths below p10, 20 below p50, 36 below p90
    below = [(f.samples < f.quantile(q)).sum(axis=0) for q in (0.1, 0.5, 0.9)]
    assert [b.tolist() for b in below] == [[4] * 8, [20] * 8, [36] * 8]
    knots = own_knots(chronos, {"target": s.close}, 8)
    assert (f.samples >= knots[0]).all() and (f.samples <= knots[-1]).all()  # no tail beyond the head's ends
    assert not np.array_equal(f.samples[:20], np.sort(f.samples[:20], axis=0))  # path order carries no meaning


def test_quantile_paths_interpolate_linearly_between_knots_and_clamp_beyond_them() -> None:
    knots = np.array([[0.0, 10.0], [1.0, 20.0], [3.0, 40.0]])  # (K=3, H=2)
    out = quantile_paths(knots, np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.1, 0.3, 0.5, 0.8, 0.9, 1.0]))
    np.testing.assert_allclose(out[:, 0], [0.0, 0.0, 0.5, 1.0, 2.5, 3.0, 3.0])
    np.testing.assert_allclose(out[:, 1], [10.0, 10.0, 15.0, 20.0, 35.0, 40.0, 40.0])


def test_a_seed_fixes_the_paths_and_the_quantiles_never_depend_on_it(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    s = series(n=70, seed=4)
    first, again = (chronos.forecast([s], 5, 16, seed=[21])[0] for _ in range(2))
    np.testing.assert_array_equal(first.samples, again.samples)
    np.testing.assert_array_equal(first.quantiles, again.quantiles)
    other = chronos.forecast([s], 5, 16, seed=[22])[0]
    assert not np.array_equal(first.samples, other.samples)
    np.testing.assert_array_equal(first.quantiles, other.quantiles)


def test_a_series_gets_the_same_forecast_alone_or_batched_with_others_of_any_schema(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    a = series(n=90, seed=5)
    events = np.zeros((40, 20), dtype=np.float32)
    events[10, ch.IS_CPI] = 1.0
    b = with_events(series(n=40, seed=6), events)  # other length, other covariate schema
    c = series(n=200, seed=7)
    alone = chronos.forecast([a], 4, 8, seed=[11])[0]
    batched = chronos.forecast([b, a, c], 4, 8, seed=[1, 11, 3])[1]
    np.testing.assert_allclose(alone.quantiles, batched.quantiles, rtol=1e-5)
    np.testing.assert_allclose(alone.samples, batched.samples, rtol=1e-5)


def test_horizons_beyond_one_forward_pass_take_the_unrolling_path(
    chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    with pytest.warns(UserWarning, match=f"prediction length <= {ONE_PASS}"):
        f = chronos.forecast([series(n=100, seed=8)], ONE_PASS + 6, 4, seed=2)[0]
    assert f.samples.shape == (4, ONE_PASS + 6) and np.isfinite(f.quantiles).all()


# ----------------------------------------------------------------------------------------------------------
# Event covariates


def test_event_channels_become_past_and_known_future_covariates() -> None:
    s = SeriesInput(timestamps=pd.date_range("2024-03-04", periods=5, freq="h", tz="UTC"), ohlcv=np.ones((5, 4)))
    plain = chronos_input(s, 3)
    assert list(plain) == ["target"]  # no events: the close alone
    np.testing.assert_array_equal(plain["target"], s.close)
    events = np.zeros((5, 20), dtype=np.float32)
    events[:, ch.DAYS_TO_FOMC_SIN] = 0.5
    events[2, ch.CPI_SURPRISE_Z] = 1.5
    ahead = np.zeros((4, 20), dtype=np.float32)
    ahead[:, ch.DAYS_TO_FOMC_SIN] = 0.6
    ahead[1, ch.IS_FOMC] = 1.0  # a scheduled meeting in the horizon, none in the context
    ahead[0, ch.BTC_LOG_RETURN] = 0.01  # a leader return: never sent as known ahead
    task = chronos_input(with_events(s, events, ahead), 3)
    # channels that are zero in the window and the horizon are left out; leaders and surprises are past-only
    assert list(task["past_covariates"]) == ["is_fomc", "cpi_surprise_z", "days_to_fomc_sin"]
    assert list(task["future_covariates"]) == ["is_fomc", "days_to_fomc_sin"]
    np.testing.assert_array_equal(task["past_covariates"]["is_fomc"], np.zeros(5))
    np.testing.assert_array_equal(task["future_covariates"]["is_fomc"], [0.0, 1.0, 0.0])  # pred_len rows only
    np.testing.assert_array_equal(task["past_covariates"]["cpi_surprise_z"], events[:, ch.CPI_SURPRISE_Z])
    only_ahead = chronos_input(with_events(s, None, ahead), 3)  # no history: zeros, as for Kronos
    assert list(only_ahead["past_covariates"]) == ["is_fomc", "days_to_fomc_sin"]


def test_event_covariates_reach_the_model(chronos: Chronos2Forecaster, series: MakeSeries) -> None:
    s = series(n=80, seed=10)
    events = np.zeros((80, 20), dtype=np.float32)
    events[:, ch.DAYS_TO_CPI_SIN] = np.linspace(-1, 1, 80)
    events[40, ch.IS_CPI] = 1.0
    ahead = np.zeros((6, 20), dtype=np.float32)
    ahead[3, ch.IS_CPI] = 1.0
    ahead[:, ch.DAYS_TO_CPI_SIN] = 0.9

    def p50(given: SeriesInput) -> np.ndarray:
        return chronos.forecast([given], 6, 4, seed=[1])[0].p50

    plain, past, known = p50(s), p50(with_events(s, events)), p50(with_events(s, events, ahead))
    assert np.abs(past - plain).max() > 1e-4  # past covariates change the forecast
    assert np.abs(known - past).max() > 1e-4  # so do the known-ahead rows
    leaked = ahead.copy()
    leaked[:, ch.SPY_LOG_RETURN] = 0.05  # not known ahead: ignored in the horizon
    np.testing.assert_array_equal(p50(with_events(s, events, leaked)), known)


# ----------------------------------------------------------------------------------------------------------
# End to end: the inference service over HTTP, and the batch job in-process


@pytest.fixture(scope="module")
def service(tiny_dir: Path) -> Iterator[str]:
    from tests.inference.conftest import running

    from candlecast.inference.app import create_app

    settings = Settings(models="chronos-tiny,baseline", model_sources={"chronos-tiny": tiny_spec(tiny_dir)})
    with running(create_app(settings)) as url:
        yield url


def test_the_inference_service_serves_the_models_own_quantiles(
    service: str, chronos: Chronos2Forecaster, series: MakeSeries
) -> None:
    from tests.inference.conftest import candle_payload

    models = {m["name"]: m for m in httpx.get(f"{service}/models", timeout=30).json()["models"]}
    assert models["chronos-tiny"]["available"] and models["chronos-tiny"]["kind"] == "chronos2"
    assert models["chronos-tiny"]["gives_samples"] is False and models["chronos-tiny"]["uses_events"] is True
    payload = {**candle_payload(60, seed=3), "symbol": "BTCUSDT"}
    events = np.zeros((60, 20))
    events[30, ch.IS_NFP] = 1.0
    ahead = np.zeros((5, 20))
    ahead[2, ch.IS_FOMC] = 1.0
    body = {
        "model": "chronos-tiny", "pred_len": 5, "sample_count": 6, "seed": 4, "quantile_levels": [0.1, 0.5, 0.9],
        "series": [{**payload, "events": events.tolist(), "future_events": ahead.tolist()}],
    }  # fmt: skip
    response = httpx.post(f"{service}/v1/forecast", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()["forecasts"][0]
    assert np.array(out["samples"]).shape == (6, 5) and np.array(out["quantiles"]).shape == (3, 5)
    task = chronos_input(
        SeriesInput(
            timestamps=pd.DatetimeIndex(payload["timestamps"]), ohlcv=np.array(payload["ohlcv"]),
            events=events, future_events=ahead,
        ), 5
    )  # fmt: skip
    knots = own_knots(chronos, task, 5)
    np.testing.assert_allclose(out["quantiles"], knots[[LEVELS.index(q) for q in (0.1, 0.5, 0.9)]], rtol=1e-6)


def test_the_batch_job_stores_the_models_own_quantiles(
    engine: Engine, db_url: str, tiny_dir: Path, chronos: Chronos2Forecaster
) -> None:
    from tests.jobs.conftest import job_settings, load_market

    from candlecast.jobs.batch import run_batch
    from candlecast.store.calendar import upsert_calendar
    from candlecast.store.predictions import latest_prediction

    start, hour = datetime(2024, 3, 1, tzinfo=UTC), timedelta(hours=1)
    frames = load_market(engine, ["BTCUSDT", "SPY", "ETHUSDT"], start, 120)
    with engine.begin() as conn:  # a CPI release in the context, an FOMC meeting in the horizon
        upsert_calendar(conn, pd.DataFrame({
            "event_type": ["cpi", "fomc"], "scheduled_at": [start + 80 * hour, start + 102 * hour],
            "status": ["confirmed", "confirmed"], "actual": [3.0, None],
        }))  # fmt: skip
    settings = job_settings(request_series_per_call=3, sample_count=8)
    settings = settings.model_copy(
        update={"models": "chronos-2", "model_sources": {"chronos-2": tiny_spec(tiny_dir, "chronos-2")},
                "database_url": db_url}
    )  # fmt: skip
    as_of = start + 100 * hour
    result = run_batch(settings, engine, "1h", "chronos-2", as_of=as_of, local=True, progress=False)
    assert result.ok == ("BTCUSDT", "ETHUSDT", "SPY"), result.failed
    eth = latest_prediction(engine, "ETHUSDT", "chronos-2", "1h", with_samples=True)
    assert eth is not None and eth.samples is not None and eth.samples.shape == (8, 4)
    assert eth.model_version == chronos.version and eth.event_context is not None
    assert eth.event_context["events"] is True
    assert (eth.p10 <= eth.p50).all() and (eth.p50 <= eth.p90).all()

    # Without events the context is the closes alone, so the stored quantiles can be checked against the model.
    plain = settings.model_copy(update={"jobs": settings.jobs.model_copy(update={"send_events": False})})
    assert run_batch(plain, engine, "1h", "chronos-2", as_of=as_of, symbols=["ETHUSDT"], local=True, progress=False).ok
    stored = latest_prediction(engine, "ETHUSDT", "chronos-2", "1h")
    assert stored is not None and stored.event_context is not None and stored.event_context["events"] is False
    candles = frames["ETHUSDT"]
    context = candles[candles["ts"] < stored.target_ts[0]].tail(settings.jobs.context_1h)
    knots = own_knots(chronos, {"target": context["close"].to_numpy()}, 4)
    for level, values in ((0.1, stored.p10), (0.5, stored.p50), (0.9, stored.p90)):
        np.testing.assert_allclose(values, knots[LEVELS.index(level)], rtol=1e-6)
