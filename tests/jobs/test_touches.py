"""Grading touch questions of past forecasts (jobs.touches, store.path_evaluations) end to end on a small replay
of a synthetic market in a real Postgres: the grid, the probabilities, the outcomes, idempotence, skips."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy.stats import norm
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.scoring import run_scoring
from candlecast.paths import BGK_BETA, TOUCH_GRID
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.path_evaluations import (
    forecasts_to_grade,
    graded_touches,
    path_evaluations_frame,
    write_path_evaluations,
)
from candlecast.store.predictions import Prediction, upsert_prediction

START = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
HOURS = 160
STEPS = 4


def ohlc_walk(n: int = HOURS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]]
    return pd.DataFrame({
        "ts": pd.date_range(START, periods=n, freq="h", tz="UTC"), "open": open_,
        "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n)),
        "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n)), "close": close,
    })  # fmt: skip


def forecast(market: pd.DataFrame, origin: int, seed: int, ohlc: bool = False, samples: bool = True,
             model: str = "walk") -> Prediction:  # fmt: skip
    """Made at candle ``origin``'s open time (last close: candle ``origin - 1``), 16 paths of ``STEPS`` steps."""
    rng = np.random.default_rng(seed)
    c0 = float(market.close.iloc[origin - 1])
    paths = c0 * np.exp(np.cumsum(rng.normal(0, 0.015, (16, STEPS)), axis=1))
    as_of = market.ts.iloc[origin].to_pydatetime()
    return Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name=model, as_of=as_of,
        target_ts=[as_of + h * H for h in range(STEPS)], p10=np.quantile(paths, 0.1, axis=0),
        p50=np.median(paths, axis=0), p90=np.quantile(paths, 0.9, axis=0), last_close=c0,
        samples=paths if samples else None, samples_high=paths * 1.006 if ohlc else None,
        samples_low=paths * 0.994 if ohlc else None,
    )  # fmt: skip


@pytest.fixture
def market(engine: Engine) -> pd.DataFrame:
    frame = ohlc_walk()
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", frame)
    return frame


def write(engine: Engine, *forecasts: Prediction) -> list[int]:
    with engine.begin() as conn:
        return [upsert_prediction(conn, f) for f in forecasts]


def expected_grades(market: pd.DataFrame, p: Prediction, origin: int, ohlc: bool) -> pd.DataFrame:
    """The grid's questions worked out with plain numpy, independently of the job's code path."""
    closes = market.close.to_numpy()
    sigma = np.diff(np.log(closes[origin - 61 : origin])).std(ddof=1)  # 60 returns up to candle origin - 1
    realised = market.iloc[origin : origin + STEPS]
    rows = []
    assert p.samples is not None
    for k in TOUCH_GRID:
        level = p.last_close * math.exp(k * sigma * math.sqrt(STEPS))
        if ohlc:
            assert p.samples_high is not None and p.samples_low is not None
            paths_side = p.samples_high.max(axis=1) if k > 0 else p.samples_low.min(axis=1)
            real_side = realised.high.max() if k > 0 else realised.low.min()
            p_rw = 2 * norm.sf(abs(k))
        else:
            paths_side = p.samples.max(axis=1) if k > 0 else p.samples.min(axis=1)
            real_side = realised.close.max() if k > 0 else realised.close.min()
            p_rw = 2 * norm.sf((abs(k) * math.sqrt(STEPS) + BGK_BETA) / math.sqrt(STEPS))
        hit = paths_side >= level if k > 0 else paths_side <= level
        touched = real_side >= level if k > 0 else real_side <= level
        rows.append({"k": k, "level": level, "side": "above" if k > 0 else "below", "p_touch": hit.mean(),
                     "p_touch_rw": p_rw, "touched": bool(touched), "uses": "ohlc" if ohlc else "close"})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ohlc", [False, True])
def test_touch_questions_are_graded_once_the_horizon_has_passed(engine: Engine, market: pd.DataFrame, ohlc) -> None:
    origin = 100
    p = forecast(market, origin, seed=1, ohlc=ohlc)
    (pid,) = write(engine, p)
    # one candle of the horizon still open: nothing graded yet
    early = run_scoring(Settings(), engine, "1h", as_of=START + (origin + STEPS - 1) * H)
    assert early.touch_questions == 0 and path_evaluations_frame(engine).empty
    result = run_scoring(Settings(), engine, "1h", as_of=START + (origin + STEPS) * H)
    assert (result.touch_questions, result.touch_forecasts, result.touch_skipped) == (len(TOUCH_GRID), 1, 0)
    rows = path_evaluations_frame(engine, pid)
    want = expected_grades(market, p, origin, ohlc)
    assert rows.k.tolist() == want.k.tolist()
    np.testing.assert_allclose(rows.level, want.level, rtol=1e-12)
    np.testing.assert_allclose(rows.p_touch, want.p_touch)
    np.testing.assert_allclose(rows.p_touch_rw, want.p_touch_rw, rtol=1e-12)
    assert rows.touched.tolist() == want.touched.tolist()
    assert rows.side.tolist() == want.side.tolist() and set(rows.uses) == {"ohlc" if ohlc else "close"}
    assert set(rows.paths) == {16} and set(rows.horizon) == {STEPS} and set(rows.model_name) == {"walk"}
    # again, and a re-check of every forecast: nothing new, nothing changed
    again = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H, since=START)
    assert again.touch_questions == 0
    pd.testing.assert_frame_equal(path_evaluations_frame(engine, pid), rows)


def test_outcomes_are_judged_on_realised_highs_and_lows_only_for_ohlc_paths(engine: Engine, market) -> None:
    """A level crossed inside a candle and back counts for an OHLC forecast, not for a close-only one."""
    origin = 100
    write(engine, forecast(market, origin, seed=2, ohlc=True, model="ohlc"),
          forecast(market, origin, seed=2, model="closes"))  # fmt: skip
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    rows = path_evaluations_frame(engine)
    by = {m: part.set_index("k") for m, part in rows.groupby("model_name")}
    # the same levels for both models (the grid is the market's, not the model's)
    np.testing.assert_allclose(by["ohlc"].level, by["closes"].level)
    realised = market.iloc[origin : origin + STEPS]
    for k, level in by["ohlc"].level.items():
        on_extremes = realised.high.max() >= level if k > 0 else realised.low.min() <= level
        on_closes = realised.close.max() >= level if k > 0 else realised.close.min() <= level
        assert by["ohlc"].touched[k] == bool(on_extremes) and by["closes"].touched[k] == bool(on_closes)
    assert (by["ohlc"].touched >= by["closes"].touched).all()


def test_forecasts_without_samples_volatility_or_candles_are_skipped_and_counted(engine: Engine, market) -> None:
    write(engine, forecast(market, 100, seed=3, samples=False, model="no-samples"),
          forecast(market, 15, seed=4, model="early"),  # fewer than 20 returns behind it
          forecast(market, 110, seed=5))  # fmt: skip
    with engine.begin() as conn:  # a candle of the last forecast's horizon is missing
        conn.execute(sa.text("DELETE FROM ohlcv_1h WHERE ts = :ts"), {"ts": START + 112 * H})
    result = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert result.touch_questions == 0 and result.touch_skipped == 3
    assert path_evaluations_frame(engine).empty


def test_rewriting_a_forecast_drops_its_grades_and_deleting_forecasts_deletes_them(engine: Engine, market) -> None:
    first, second = write(engine, forecast(market, 100, seed=6), forecast(market, 101, seed=7))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert len(path_evaluations_frame(engine)) == 2 * len(TOUCH_GRID)
    (again,) = write(engine, forecast(market, 100, seed=8))  # the same slot, new numbers
    assert again == first and path_evaluations_frame(engine, first).empty
    result = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert result.touch_forecasts == 1 and len(path_evaluations_frame(engine, first)) == len(TOUCH_GRID)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE id = :id"), {"id": second})
    assert path_evaluations_frame(engine, second).empty
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE ml_predictions"))
    assert path_evaluations_frame(engine).empty


def test_rescore_grades_the_touch_questions_again(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, forecast(market, 100, seed=9))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    before = path_evaluations_frame(engine)
    result = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H, rescore=True)
    assert result.touch_questions == len(TOUCH_GRID)
    after = path_evaluations_frame(engine)
    pd.testing.assert_frame_equal(after.drop(columns="scored_at"), before.drop(columns="scored_at"))


def test_grades_of_a_forecast_rewritten_since_it_was_read_are_not_written(engine: Engine, market) -> None:
    (pid,) = write(engine, forecast(market, 100, seed=10))
    as_of = START + HOURS * H
    forecasts, incomplete = forecasts_to_grade(engine, "1h", as_of, [pid])
    assert incomplete == 0 and [f.prediction_id for f in forecasts] == [pid]
    grades = {"prediction_id": np.full(2, pid), "k": np.array([-1, 1]), "horizon": np.full(2, STEPS),
              "level": np.array([99.0, 101.0]), "side": np.array(["below", "above"]), "p_touch": np.array([0.5, 0.25]),
              "p_touch_rw": np.array([0.3, 0.3]), "paths": np.full(2, 16), "touched": np.array([True, False]),
              "uses": np.array(["close", "close"])}  # fmt: skip
    write(engine, forecast(market, 100, seed=11))  # rewritten after the read
    with engine.begin() as conn:
        assert write_path_evaluations(conn, grades, forecasts) == 0
    forecasts, _ = forecasts_to_grade(engine, "1h", as_of, [pid])
    with engine.begin() as conn:
        assert write_path_evaluations(conn, grades, forecasts) == 2
    with engine.begin() as conn:  # the same grades again: nothing new
        assert write_path_evaluations(conn, grades, forecasts) == 0
    (graded,) = graded_touches(engine)
    assert graded.model_name == "walk" and graded.timeframe == "1h" and graded.uses == {"close": 2}
    order = np.argsort(graded.k)
    assert graded.k[order].tolist() == [-1, 1] and graded.p_touch[order].tolist() == [0.5, 0.25]
    assert graded.touched[order].tolist() == [True, False] and set(graded.paths) == {16}
    assert forecasts_to_grade(engine, "1h", as_of, [pid])[0] == []  # graded forecasts are not asked again
