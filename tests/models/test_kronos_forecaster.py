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


def test_known_ahead_event_rows_reach_an_event_conditioned_model(
    tiny_kronos: tuple[str, str], series: MakeSeries
) -> None:
    import torch

    model, tokenizer = tiny_kronos
    spec = ModelSpec(name="kronos-ev", kind="kronos", model_source=model, tokenizer_source=tokenizer, max_context=48)
    conditioned = KronosForecaster.load(spec)
    projection = conditioned.predictor.model.attach_event_projection()
    with torch.no_grad():  # as if trained: events now move the embeddings a lot
        projection.weight.copy_(torch.randn(projection.weight.shape, generator=torch.Generator().manual_seed(0)) * 5)
    s = series(n=40, seed=8)
    history = np.zeros((40, 20), dtype=np.float32)
    ahead = np.zeros((6, 20), dtype=np.float32)
    ahead[:, 0], ahead[:, 10] = 1.0, 0.5  # an FOMC decision day and its countdown over the whole horizon

    def paths(future: np.ndarray | None) -> np.ndarray:
        given = SeriesInput(timestamps=s.timestamps, ohlcv=s.ohlcv, events=history, future_events=future)
        return conditioned.forecast([given], 6, 8, seed=[3])[0].samples

    np.testing.assert_array_equal(paths(None), paths(np.zeros((6, 20), dtype=np.float32)))  # absent = zeros
    # the first step is generated from the last history candle; the horizon rows steer the steps after it
    assert not np.array_equal(paths(None)[:, 1:], paths(ahead)[:, 1:])


def test_too_few_known_ahead_rows_are_refused_naming_the_field(kronos: KronosForecaster, series: MakeSeries) -> None:
    from candlecast.errors import InputError

    s = series(n=30, seed=9)
    short = SeriesInput(timestamps=s.timestamps, ohlcv=s.ohlcv, future_events=np.zeros((2, 20)))
    with pytest.raises(InputError, match="pred_len=3") as info:
        kronos.forecast([s, short], 3, 2, seed=1)
    assert info.value.field == "series[1].future_events"
