"""The random-walk baseline: statsforecast-equal Gaussian intervals, calibrated, seeded per series."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from candlecast.errors import InputError
from candlecast.models.base import SeriesInput
from candlecast.models.baseline import BASELINE_METHODS, BaselineConfig, BaselineForecaster

MakeSeries = Callable[..., SeriesInput]


def test_gaussian_intervals_equal_statsforecast_naive_on_log_prices(series: MakeSeries) -> None:
    from statsforecast import StatsForecast
    from statsforecast.models import Naive

    s = series(n=300, seed=4)
    f = BaselineForecaster(config=BaselineConfig(method="gaussian")).forecast([s], 12, 8, (0.1, 0.5, 0.9), seed=0)[0]
    frame = pd.DataFrame({"unique_id": "x", "ds": s.timestamps.tz_localize(None), "y": np.log(s.close)})
    oracle = StatsForecast(models=[Naive()], freq="h").forecast(df=frame, h=12, level=[80])
    np.testing.assert_allclose(f.p10, np.exp(oracle["Naive-lo-80"]), rtol=1e-9)
    np.testing.assert_allclose(f.p90, np.exp(oracle["Naive-hi-80"]), rtol=1e-9)
    np.testing.assert_allclose(f.p50, s.last_close, rtol=1e-12)


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_forecast_has_the_promised_shapes_and_ordered_quantiles(method: str, series: MakeSeries) -> None:
    s = series(n=100, seed=1)
    f = BaselineForecaster(config=BaselineConfig(method=method)).forecast([s], 6, 5, (0.9, 0.1, 0.5), seed=3)[0]
    assert f.samples.shape == (5, 6)
    assert f.quantiles.shape == (3, 6)
    assert f.quantile_levels == (0.9, 0.1, 0.5)  # the caller's order is kept
    assert (f.quantile(0.1) <= f.quantile(0.5)).all() and (f.quantile(0.5) <= f.quantile(0.9)).all()
    assert list(f.target_timestamps) == list(pd.date_range(s.timestamps[-1], periods=7, freq="h")[1:])
    assert f.model_name == "baseline" and f.ohlc_samples is None
    assert np.isfinite(f.samples).all()


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_a_series_gets_the_same_forecast_alone_or_in_a_batch(method: str, series: MakeSeries) -> None:
    model = BaselineForecaster(config=BaselineConfig(method=method))
    a, b, c = series(n=80, seed=1), series(n=50, seed=2), series(n=120, seed=3)
    alone = model.forecast([a], 5, 16, seed=[77])[0]
    batched = model.forecast([b, a, c], 5, 16, seed=[1, 77, 3])[1]
    np.testing.assert_array_equal(alone.samples, batched.samples)
    np.testing.assert_array_equal(alone.quantiles, batched.quantiles)
    other_seed = model.forecast([a], 5, 16, seed=[78])[0]
    assert not np.array_equal(alone.samples, other_seed.samples)


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_p10_p90_cover_about_80_percent_of_a_true_random_walk(method: str, walk: Callable[..., np.ndarray]) -> None:
    # 300 non-overlapping one-step forecasts of a Gaussian random walk: coverage ~ Binomial(300, 0.8) / 300,
    # whose standard deviation is 0.023; the band below is about +-3.5 sigma.
    candles = walk(300 * 61, seed=9, sigma=0.01)
    ts = pd.date_range("2020-01-01", periods=len(candles), freq="h", tz="UTC")
    model = BaselineForecaster(config=BaselineConfig(method=method))
    inside = []
    for k in range(300):
        lo, hi = k * 61, k * 61 + 60
        s = SeriesInput(timestamps=ts[lo:hi], ohlcv=candles[lo:hi])
        f = model.forecast([s], 1, 1, seed=k)[0]
        inside.append(f.p10[0] <= candles[hi, 3] <= f.p90[0])
    assert 0.72 <= np.mean(inside) <= 0.88


def test_non_positive_prices_and_too_short_contexts_are_input_errors(series: MakeSeries) -> None:
    model = BaselineForecaster()
    s = series(n=10)
    rows = s.ohlcv.copy()
    rows[:, :4] -= rows[:, :4].max() + 1  # all prices negative
    negative = SeriesInput(timestamps=s.timestamps, ohlcv=rows)
    with pytest.raises(InputError, match="positive close prices") as info:
        model.forecast([s, negative], 3, 2)
    assert info.value.field == "series[1].ohlcv"
    with pytest.raises(InputError, match="at least 3 candles"):
        model.forecast([series(n=2)], 3, 2)


def test_contexts_longer_than_max_context_use_only_the_recent_candles(series: MakeSeries) -> None:
    model = BaselineForecaster(config=BaselineConfig(method="gaussian", max_context=50))
    long = series(n=200, seed=5)
    recent = long.tail(50)
    a = model.forecast([long], 4, 4, seed=1)[0]
    b = model.forecast([recent], 4, 4, seed=1)[0]
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
