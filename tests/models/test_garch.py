"""GARCH(1,1)-t: recovers known parameters, simulates its own variance, is seeded per series, falls back when
the fit fails, and runs through the registry, the scheduler's cron table and the batch job."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy.engine import Engine

from candlecast.config import GarchSettings, Settings
from candlecast.errors import InputError
from candlecast.jobs.batch import run_batch
from candlecast.jobs.scheduler import job_specs
from candlecast.models.base import SeriesInput
from candlecast.models.garch import GarchFit, GarchForecaster, fit_garch, simulate_returns
from candlecast.models.registry import Registry
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.predictions import latest_prediction

MakeSeries = Callable[..., SeriesInput]
# A daily-equity-like GARCH(1,1)-t: persistence 0.98, unconditional volatility 1% per candle, nu 6.
OMEGA, ALPHA, BETA, NU = 2e-6, 0.08, 0.90, 6.0


def garch_returns(n: int, seed: int) -> tuple[np.ndarray, float]:
    """``n`` log returns of the GARCH above (started at its unconditional variance), and the true variance of
    the next one."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(NU, n) * math.sqrt((NU - 2) / NU)
    var, out = OMEGA / (1 - ALPHA - BETA), np.empty(n)
    for t in range(n):
        out[t] = math.sqrt(var) * z[t]
        var = OMEGA + ALPHA * out[t] ** 2 + BETA * var
    return out, var


def garch_series(n: int, seed: int = 0, symbol: str = "X") -> SeriesInput:
    """``n`` hourly candles whose closes follow the GARCH above."""
    returns, _ = garch_returns(n, seed)
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.r_[100.0, close[:-1]]
    ohlcv = np.column_stack([open_, np.maximum(open_, close), np.minimum(open_, close), close])
    return SeriesInput(
        timestamps=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"), ohlcv=ohlcv, symbol=symbol
    )


def log_returns(s: SeriesInput) -> np.ndarray:
    return np.diff(np.log(s.close))


def test_the_fit_recovers_the_persistence_tail_and_volatility_of_a_known_garch() -> None:
    # 3000 returns: standard errors about 0.01 (alpha), 0.006 (persistence), 0.4 (nu); bounds are 3-4 of them.
    returns, next_var = garch_returns(3000, seed=0)
    fit = fit_garch(returns, GarchSettings())
    assert fit.fallback is None and fit.mu == 0.0
    assert abs(fit.persistence - (ALPHA + BETA)) < 0.02
    assert abs(fit.alpha - ALPHA) < 0.03
    assert 4.5 < (fit.nu or 0) < 8.0
    assert 0.9 < math.sqrt(fit.next_variance / next_var) < 1.1  # the volatility of the next candle
    # at persistence 0.98 the long-run level is weakly identified, hence the wider band
    assert 0.75 < math.sqrt(fit.unconditional_variance / (OMEGA / (1 - ALPHA - BETA))) < 1.33
    # on the default 500-candle window the next candle's volatility is still within 20%
    short = fit_garch(returns[-499:], GarchSettings())
    assert short.fallback is None and 0.8 < math.sqrt(short.next_variance / next_var) < 1.25


def test_the_paths_have_the_fitted_models_variance_at_every_step_and_its_t_quantiles_at_the_first() -> None:
    s = garch_series(500, seed=3)
    model = GarchForecaster()
    f = model.forecast([s], 10, 20_000, (0.1, 0.5, 0.9), seed=11)[0]
    fit = fit_garch(log_returns(s), model.settings)  # the fit the forecast used (deterministic)
    assert fit.fallback is None and fit.nu is not None
    cumulative = np.log(f.samples / s.last_close)  # (20000, 10) h-step log returns
    expected = np.cumsum(fit.expected_variances(10))
    # 20,000 heavy-tailed draws: the relative standard error of a variance is about 2-3%
    np.testing.assert_allclose(cumulative.var(axis=0), expected, rtol=0.08)
    # step 1 is exactly sigma_{T+1} times a unit-variance Student t
    t_scale = math.sqrt(fit.next_variance * (fit.nu - 2) / fit.nu)
    for level in (0.1, 0.9):
        exact = s.last_close * math.exp(t_scale * stats.t.ppf(level, fit.nu))
        assert f.quantile(level)[0] == pytest.approx(exact, rel=0.1 * t_scale)  # a tenth of a sigma


def test_known_parameters_simulate_to_their_theoretical_variance() -> None:
    fit = GarchFit(mu=0.0, omega=OMEGA, alpha=ALPHA, beta=BETA, nu=NU, next_variance=4e-4)  # a volatile day
    paths = simulate_returns(fit, 20, 40_000, np.random.default_rng(0))
    expected = fit.expected_variances(20)  # decays from 4e-4 towards the unconditional 1e-4
    closed_form = 1e-4 + (ALPHA + BETA) ** np.arange(20) * (4e-4 - 1e-4)
    np.testing.assert_allclose(expected, closed_form, rtol=1e-12)
    np.testing.assert_allclose(paths.var(axis=0), expected, rtol=0.1)
    np.testing.assert_allclose(np.cumsum(paths, axis=1).var(axis=0), np.cumsum(expected), rtol=0.06)


def test_forecasts_are_reproducible_per_seed_and_independent_of_batching() -> None:
    model = GarchForecaster()
    a, b, c = garch_series(300, seed=1), garch_series(200, seed=2), garch_series(600, seed=3)
    alone = model.forecast([a], 5, 16, seed=[77])[0]
    batched = model.forecast([b, a, c], 5, 16, seed=[1, 77, 3])[1]
    np.testing.assert_array_equal(alone.samples, batched.samples)
    np.testing.assert_array_equal(alone.quantiles, batched.quantiles)
    np.testing.assert_array_equal(model.forecast([a], 5, 16, seed=[77])[0].samples, alone.samples)
    assert not np.array_equal(model.forecast([a], 5, 16, seed=[78])[0].samples, alone.samples)
    unseeded = model.forecast([a], 5, 16)[0]  # a random seed, reported, reproduces the forecast
    assert unseeded.seed is not None
    np.testing.assert_array_equal(model.forecast([a], 5, 16, seed=[unseeded.seed])[0].samples, unseeded.samples)


def test_quantiles_are_ordered_and_the_band_widens_with_the_horizon() -> None:
    s = garch_series(400, seed=4)
    f = GarchForecaster().forecast([s], 10, 8, (0.9, 0.1, 0.5), seed=5)[0]
    assert f.samples.shape == (8, 10) and f.quantiles.shape == (3, 10) and f.ohlc_samples is None
    assert f.quantile_levels == (0.9, 0.1, 0.5)  # the caller's order is kept
    assert (f.p10 < f.p50).all() and (f.p50 < f.p90).all()
    width = np.log(f.p90 / f.p10)
    assert width[-1] > 2 * width[0]  # about sqrt(10) times for a persistent GARCH
    assert list(f.target_timestamps) == list(pd.date_range(s.timestamps[-1], periods=11, freq="h")[1:])
    assert f.model_name == "garch" and f.model_version == "garch11-t-zero-w500-v1"


def test_contexts_longer_than_the_window_use_only_the_recent_candles() -> None:
    model = GarchForecaster(settings=GarchSettings(window=300))
    long = garch_series(800, seed=6)
    a = model.forecast([long], 4, 4, seed=1)[0]
    b = model.forecast([long.tail(300)], 4, 4, seed=1)[0]
    np.testing.assert_array_equal(a.quantiles, b.quantiles)


def test_too_short_or_non_positive_series_are_input_errors(series: MakeSeries) -> None:
    model = GarchForecaster()
    with pytest.raises(InputError, match="model garch needs at least 100 candles, found 99") as info:
        model.forecast([garch_series(300), series(n=99)], 3, 2)
    assert info.value.field == "series[1].ohlcv"
    s = series(n=150)
    rows = s.ohlcv.copy()
    rows[:, :4] -= rows[:, :4].max() + 1
    with pytest.raises(InputError, match="positive close prices"):
        model.forecast([SeriesInput(timestamps=s.timestamps, ohlcv=rows)], 3, 2)
    with pytest.raises(ValueError, match="min_window"):
        GarchSettings(window=50, min_window=100)


def test_a_fit_that_does_not_converge_falls_back_to_an_ewma_random_walk_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = garch_series(500, seed=7, symbol="SLOW")
    model = GarchForecaster(settings=GarchSettings(max_iter=1))  # one optimiser iteration cannot converge
    with caplog.at_level(logging.WARNING, logger="candlecast.models.garch"):
        f = model.forecast([s], 3, 8, seed=2)[0]
    assert "SLOW 1h: the fit did not converge" in caplog.text and "EWMA random walk" in caplog.text
    fallback = fit_garch(log_returns(s), model.settings)
    assert fallback.fallback is not None and fallback.nu is None and fallback.persistence == 1.0
    # a Gaussian random walk with the EWMA sigma: p90 at step 1 is exp(1.2816 sigma), up to sampling error
    sigma = math.sqrt(fallback.next_variance)
    assert math.log(f.p90[0] / s.last_close) == pytest.approx(1.2816 * sigma, rel=0.06)


def test_a_flat_series_is_forecast_flat_not_failed(caplog: pytest.LogCaptureFixture) -> None:
    ohlcv = np.full((150, 4), 42.0)
    s = SeriesInput(timestamps=pd.date_range("2024-01-01", periods=150, freq="h", tz="UTC"), ohlcv=ohlcv)
    with caplog.at_level(logging.WARNING, logger="candlecast.models.garch"):
        f = GarchForecaster().forecast([s], 3, 4, seed=0)[0]
    assert "no variance" in caplog.text
    np.testing.assert_array_equal(f.samples, 42.0)


def test_garch_is_a_known_model_with_its_settings_and_capabilities() -> None:
    settings = Settings(models="baseline,garch", garch={"window": 300, "mean": "constant"})
    garch = Registry.from_settings(settings).get("garch")
    info = garch.info()
    assert info.kind == "garch" and info.context_length == 300 and info.version == "garch11-t-constant-w300-v1"
    assert info.gives_samples and not info.gives_ohlc and not info.uses_events and not info.takes_adapters
    specs = {spec.name: spec for spec in job_specs(settings)}
    assert specs["garch-batch-1d"].model == "garch" and specs["garch-batch-1d"].skip_reason is None
    without = {spec.name: spec for spec in job_specs(Settings(models="baseline"))}
    assert "not configured" in (without["garch-batch-1h"].skip_reason or "")


def test_the_batch_job_forecasts_with_garch_in_process_and_skips_a_too_short_series(engine: Engine) -> None:
    start, hour = datetime(2024, 3, 1, tzinfo=UTC), timedelta(hours=1)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto"), Instrument("ETHUSDT", "crypto")])
        for symbol, n, seed in (("BTCUSDT", 300, 8), ("ETHUSDT", 60, 9)):  # ETHUSDT: fewer than 100 candles
            s = garch_series(n, seed)
            frame = pd.DataFrame(s.ohlcv[:, :4], columns=["open", "high", "low", "close"])
            frame.insert(0, "ts", pd.date_range(start + (300 - n) * hour, periods=n, freq="h", tz="UTC"))
            frame["volume"], frame["amount"] = 1.0, frame["close"]
            upsert_candles(conn, symbol, "1h", frame)
    settings = Settings(
        models="garch",
        jobs={"pred_len_1h": 4, "context_1h": 400, "sample_count": 16, "min_context": 16, "http_retries": 1},
    )
    result = run_batch(settings, engine, "1h", "garch", as_of=start + 300 * hour, local=True, progress=False)
    assert result.ok == ("BTCUSDT",) and not result.failed
    assert "60 candles" in result.skipped["ETHUSDT"] and "need 100" in result.skipped["ETHUSDT"]
    stored = latest_prediction(engine, "BTCUSDT", "garch", "1h", with_samples=True)
    assert stored is not None and stored.samples is not None and stored.samples.shape == (16, 4)
    assert stored.target_ts == [start + (300 + h) * hour for h in range(4)]
    assert stored.event_context is not None and stored.model_version == "garch11-t-zero-w500-v1"
    seed = stored.event_context["seed"]
    direct = GarchForecaster().forecast([garch_series(300, 8)], 4, 16, seed=[seed])[0]
    assert stored.p10[0] < stored.last_close < stored.p90[0]
    np.testing.assert_allclose(stored.p50, direct.p50, rtol=1e-6)  # the job's forecast is the model's
