"""Kronos behind the Forecaster interface, on a tiny random checkpoint written by the test run."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from candlecast.config import ModelSpec
from candlecast.models.base import SeriesInput
from candlecast.models.kronos_forecaster import KronosForecaster

MakeSeries = Callable[..., SeriesInput]


@pytest.fixture(scope="module")
def kronos(tiny_kronos: tuple[str, str]) -> KronosForecaster:
    model, tokenizer = tiny_kronos
    spec = ModelSpec(name="kronos-tiny", kind="kronos", model_source=model, tokenizer_source=tokenizer, max_context=48)
    return KronosForecaster.load(spec)


def test_forecast_gives_close_paths_ohlc_paths_and_quantiles(kronos: KronosForecaster, series: MakeSeries) -> None:
    s = series(n=40, seed=1)
    f = kronos.forecast([s], 4, 3, (0.1, 0.5, 0.9), seed=5)[0]
    assert f.samples.shape == (3, 4)
    assert f.ohlc_samples is not None and f.ohlc_samples.shape == (3, 4, 4)
    np.testing.assert_array_equal(f.ohlc_samples[..., 3], f.samples)
    np.testing.assert_allclose(f.p50, np.quantile(f.samples, 0.5, axis=0))
    assert np.isfinite(f.samples).all()
    assert list(f.target_timestamps) == list(pd.date_range(s.timestamps[-1], periods=5, freq="h")[1:])
    assert f.model_name == "kronos-tiny" and f.seed is not None


def test_a_series_gets_the_same_paths_alone_or_in_a_batch_of_other_lengths(
    kronos: KronosForecaster, series: MakeSeries
) -> None:
    a, b, c = series(n=40, seed=1), series(n=20, seed=2), series(n=100, seed=3)
    alone = kronos.forecast([a], 3, 4, seed=[11])[0]
    batched = kronos.forecast([b, a, c], 3, 4, seed=[1, 11, 3])[1]
    np.testing.assert_allclose(alone.samples, batched.samples, rtol=1e-5)
    again = kronos.forecast([a], 3, 4, seed=[11])[0]
    np.testing.assert_array_equal(alone.samples, again.samples)


def test_close_only_instruments_and_event_tensors_are_accepted(kronos: KronosForecaster, series: MakeSeries) -> None:
    s = series(n=30, seed=4)
    rows = s.ohlcv.copy()
    rows[:, [0, 1, 2, 4, 5]] = np.nan  # a close-only source
    close_only = SeriesInput(timestamps=s.timestamps, ohlcv=rows, events=np.zeros((30, 20)))
    f = kronos.forecast([close_only, s], 2, 2, seed=1)
    assert all(np.isfinite(x.samples).all() for x in f)


def test_horizons_beyond_half_the_context_slide_the_window(kronos: KronosForecaster, series: MakeSeries) -> None:
    f = kronos.forecast([series(n=60, seed=6)], 30, 1, seed=2)[0]  # 30 > 48 // 2
    assert f.samples.shape == (1, 30) and np.isfinite(f.samples).all()
