"""The scoring job: hand-made forecasts whose scores are worked out by hand, then a longer synthetic market
for the random-walk reference, the scoring backlog and the performance table."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import scoringrules
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.scoring import refresh_performance, run_scoring
from candlecast.scores import diebold_mariano, randomized_pit, step_uniform
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.evaluations import evaluations_frame, prediction_samples, scored_through, scoring_backlog_ids
from candlecast.store.jobs import recent_job_runs
from candlecast.store.performance import calibration, performance
from candlecast.store.predictions import Prediction, upsert_prediction

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
H = timedelta(hours=1)


def candles(closes: dict[datetime, float]) -> pd.DataFrame:
    return pd.DataFrame({"ts": list(closes), "close": list(closes.values())})


def forecast(as_of: datetime, last_close: float, p10, p50, p90, samples) -> Prediction:
    n = len(p50)
    return Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name="hand", as_of=as_of,
        target_ts=[as_of + h * H for h in range(n)], p10=p10, p50=p50, p90=p90, last_close=last_close,
        samples=np.array(samples, dtype=np.float32).T,  # given as one list of paths per step
    )  # fmt: skip


@pytest.fixture
def store(engine: Engine) -> Engine:
    """Two forecasts; candles at T0 (103), T0+1h (98), none at T0+2h (a gap), T0+3h (99)."""
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", candles({T0 - H: 100.0, T0: 103.0, T0 + H: 98.0, T0 + 3 * H: 99.0}))
        # made at T0 (last close 100): steps at T0, T0+1h, T0+2h
        upsert_prediction(conn, forecast(
            T0, 100.0, p10=[100, 98.5, 90], p50=[102, 100.5, 100], p90=[105, 102, 110],
            samples=[[99, 101, 104, 106], [97, 100, 100, 103], [90, 100, 100, 110]],
        ))  # fmt: skip
        # made at T0+1h (last close 103): steps at T0+1h, T0+2h, T0+3h
        upsert_prediction(conn, forecast(
            T0 + H, 103.0, p10=[99, 95, 95], p50=[104, 100, 101], p90=[106, 105, 104],
            samples=[[98, 103, 105, 106], [95, 100, 100, 105], [95, 100, 102, 104]],
        ))  # fmt: skip
    return engine


def test_scores_match_hand_computed_values(store: Engine) -> None:
    result = run_scoring(Settings(), store, "1h", as_of=T0 + 2 * H)
    # closed by T0+2h: the candles at T0 and T0+1h. Forecast 1 steps 1-2, forecast 2 step 1.
    assert (result.steps_scored, result.predictions_scored) == (3, 2)
    rows = evaluations_frame(store).set_index(["prediction_id", "step"])
    first, second, later = rows.loc[(1, 1)], rows.loc[(1, 2)], rows.loc[(2, 1)]

    # forecast 1, step 1: y = 103, c0 = 100, p10/p50/p90 = 100/102/105, samples 99 101 104 106.
    # mean|X - y| = (4 + 2 + 1 + 3) / 4 = 2.5; sum of |x_i - x_j| over ordered pairs i != j = 2 * 24 = 48,
    # divided by 2 M (M - 1) = 24 (the fair estimator): 2.0, so CRPS = 0.5.
    assert first.realised_close == 103 and first.direction_hit and first.in_band and first.in_band_raw
    assert first.crps == pytest.approx(0.5)
    assert (first.pinball_10, first.pinball_50, first.pinball_90) == pytest.approx((0.3, 0.5, 0.2))
    assert (first.realised_return, first.strategy_return) == pytest.approx((0.03, 0.03))
    assert first.target_ts == T0 and first.p50 == 102 and first.last_close == 100

    # forecast 1, step 2: y = 98 below p10 = 98.5; p50 100.5 says up, the close went down.
    # mean|X - y| = (1 + 2 + 2 + 5) / 4 = 2.5; pairs 2 * 18 = 36 -> 36 / 24 = 1.5; CRPS = 1.0.
    assert not second.direction_hit and not second.in_band and not second.in_band_raw
    assert second.crps == pytest.approx(1.0)
    assert (second.pinball_10, second.pinball_50, second.pinball_90) == pytest.approx((0.45, 1.25, 0.4))
    assert (second.realised_return, second.strategy_return) == pytest.approx((-0.02, -0.02))

    # forecast 2, step 1: c0 = 103, p50 = 104 (up), y = 98 (down): a miss, and below p10 = 99.
    assert not later.direction_hit and not later.in_band
    assert later.strategy_return == pytest.approx(98 / 103 - 1)

    # One candle of history before T0: too little for the random walk's volatility, so no reference.
    assert rows.crps_rw.isna().all()


def test_only_closed_candles_are_scored_and_a_rerun_adds_nothing(store: Engine) -> None:
    settings = Settings()
    assert run_scoring(settings, store, "1h", as_of=T0 + 30 * timedelta(minutes=1)).steps_scored == 0
    assert run_scoring(settings, store, "1h", as_of=T0 + H).steps_scored == 1  # the T0 candle closed
    assert run_scoring(settings, store, "1h", as_of=T0 + 2 * H).steps_scored == 2
    # T0+2h never printed: by T0+5h forecast 1 has nothing left; forecast 2 gains step 3 (T0+3h).
    assert run_scoring(settings, store, "1h", as_of=T0 + 5 * H).steps_scored == 1
    assert run_scoring(settings, store, "1h", as_of=T0 + 5 * H).steps_scored == 0
    frame = evaluations_frame(store)
    assert sorted(zip(frame.prediction_id, frame.step, strict=True)) == [(1, 1), (1, 2), (2, 1), (2, 3)]
    runs = recent_job_runs(store, "score-signals-1h")
    assert len(runs) == 5 and {r.status for r in runs} == {"ok"}
    assert runs[0].counts["steps_scored"] == 0 and runs[1].counts["steps_scored"] == 1


def test_performance_view_aggregates_the_scores(store: Engine) -> None:
    run_scoring(Settings(), store, "1h", as_of=T0 + 5 * H)
    (row,) = performance(store, symbol="BTCUSDT", model_name="hand", window="all")
    assert (row.n_predictions, row.n_steps) == (2, 4)
    # steps: (1,1) hit, in band; (1,2) miss, out; (2,1) miss, out; (2,3): c0 103, p50 101 (down), y 99 (down)
    # -> hit, inside 95..104 -> in band.
    assert row.hit_rate == pytest.approx(2 / 4) and row.coverage == pytest.approx(2 / 4)
    # (2,3): samples 95 100 102 104 vs 99: mean|X-y| = (4+1+3+5)/4 = 3.25; pairs 2*(5+7+9+2+4+2) = 58
    # -> 58/24; CRPS 3.25 - 58/24. (2,1): samples 98 103 105 106 vs 98: (0+5+7+8)/4 = 5;
    # pairs 2*(5+7+8+2+3+1) = 52 -> 52/24; CRPS 5 - 52/24.
    assert row.mean_crps == pytest.approx((0.5 + 1.0 + (5 - 52 / 24) + (3.25 - 58 / 24)) / 4)
    # Sharpe from the step-1 strategy returns of the two forecasts, annualised for hourly candles.
    step1 = np.array([0.03, 98 / 103 - 1])  # forecast 2 was long (p50 104 > 103) and the close fell
    expected = step1.mean() / step1.std(ddof=1) * math.sqrt(8760)
    assert row.sharpe == pytest.approx(expected)
    assert row.mean_strategy_return == pytest.approx(step1.mean())


def test_rewriting_a_forecast_drops_its_scores_and_it_is_scored_again(store: Engine) -> None:
    settings = Settings()
    run_scoring(settings, store, "1h", as_of=T0 + 2 * H)
    with store.begin() as conn:  # the same slot forecast again, now calling step 1 down
        upsert_prediction(conn, forecast(
            T0, 100.0, p10=[95, 95, 90], p50=[99, 99, 100], p90=[101, 102, 110],
            samples=[[95, 99, 99, 101], [95, 99, 99, 102], [90, 100, 100, 110]],
        ))  # fmt: skip
    with store.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM signal_evaluations WHERE prediction_id = 1")).scalar()
    assert left == 0
    assert run_scoring(settings, store, "1h", as_of=T0 + 2 * H).steps_scored == 2
    rows = evaluations_frame(store, prediction_id=1)
    assert rows.strategy_return.tolist() == pytest.approx([-0.03, 0.02])


def test_deleting_forecasts_deletes_their_scores(store: Engine) -> None:
    run_scoring(Settings(), store, "1h", as_of=T0 + 5 * H)
    with store.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE id = 1"))
        assert conn.execute(sa.text("SELECT DISTINCT prediction_id FROM signal_evaluations")).scalars().all() == [2]
        conn.execute(sa.text("DELETE FROM instruments WHERE symbol = 'BTCUSDT'"))  # cascades to forecast 2
        assert conn.execute(sa.text("SELECT count(*) FROM signal_evaluations")).scalar() == 0


def test_truncating_forecasts_clears_scores(store: Engine) -> None:
    run_scoring(Settings(), store, "1h", as_of=T0 + 5 * H)
    with store.begin() as conn:
        conn.execute(sa.text("TRUNCATE ml_predictions"))
        assert conn.execute(sa.text("SELECT count(*) FROM signal_evaluations")).scalar() == 0


# -- the random-walk reference, the backlog and the performance table on a longer market ---------------

START = datetime(2024, 1, 1, tzinfo=UTC)
HOURS = 160


def walk_closes(n: int = HOURS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"ts": ts, "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))})


def sampled_forecast(closes: pd.DataFrame, origin: int, seed: int, steps: int = 4, model: str = "walk") -> Prediction:
    """A forecast made at candle ``origin``'s open time (last close: candle ``origin - 1``) from 16 paths."""
    rng = np.random.default_rng(seed)
    c0 = float(closes.close.iloc[origin - 1])
    paths = c0 * np.exp(np.cumsum(rng.normal(0.001, 0.012, (16, steps)), axis=1))
    as_of = closes.ts.iloc[origin].to_pydatetime()
    return Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name=model, as_of=as_of,
        target_ts=[as_of + h * H for h in range(steps)], p10=np.quantile(paths, 0.1, axis=0),
        p50=np.median(paths, axis=0), p90=np.quantile(paths, 0.9, axis=0), last_close=c0,
        samples=paths.astype(np.float32),
    )  # fmt: skip


@pytest.fixture
def market(engine: Engine) -> pd.DataFrame:
    closes = walk_closes()
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", closes)
    return closes


def write(engine: Engine, *forecasts: Prediction) -> list[int]:
    with engine.begin() as conn:
        return [upsert_prediction(conn, f) for f in forecasts]


def test_random_walk_reference_uses_the_60_log_returns_before_the_origin(engine: Engine, market: pd.DataFrame) -> None:
    origin = 100
    (pid,) = write(engine, sampled_forecast(market, origin, seed=1))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    rows = evaluations_frame(engine, pid)
    closes = market.close.to_numpy()
    sigma = np.diff(np.log(closes[origin - 61 : origin])).std(ddof=1)  # candles origin-61 .. origin-1
    c0 = closes[origin - 1]
    expected = scoringrules.crps_lognormal(rows.realised_close, np.log(c0), sigma * np.sqrt(rows.step))
    np.testing.assert_allclose(rows.crps_rw, expected, rtol=1e-9)
    # A forecast with fewer than 20 returns behind it has no reference.
    (early,) = write(engine, sampled_forecast(market, 15, seed=2))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert evaluations_frame(engine, early).crps_rw.isna().all()


def test_old_unscored_steps_are_scored_whatever_the_forecasts_age(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, *(sampled_forecast(market, k, seed=k) for k in range(70, 80)))
    a_year_later = START + timedelta(days=400)
    result = run_scoring(Settings(), engine, "1h", as_of=a_year_later)
    assert (result.steps_scored, result.predictions_scored, result.forecasts_settled) == (40, 10, 10)
    assert scoring_backlog_ids(engine) == []  # nothing left to look at
    assert run_scoring(Settings(), engine, "1h", as_of=a_year_later).steps_scored == 0


def test_scoring_hour_by_hour_reads_each_steps_column_and_gives_the_scores_of_one_pass(
    engine: Engine, market: pd.DataFrame
) -> None:
    # Steady state: each run scores the one step of every pending forecast that just closed, and reads only those
    # sample columns (prediction_samples with step ranges). The scores equal one run over everything, and the
    # fair CRPS of each step's own column.
    forecasts = [sampled_forecast(market, k, seed=k, steps=6) for k in range(100, 110)]
    ids = write(engine, *forecasts)
    for hour in range(100, 118):
        run_scoring(Settings(), engine, "1h", as_of=START + hour * H)
    stepwise = evaluations_frame(engine).sort_values(["prediction_id", "step"]).reset_index(drop=True)
    assert len(stepwise) == 60
    for pid, f in zip(ids, forecasts, strict=True):
        rows = stepwise[stepwise.prediction_id == pid]
        expected = scoringrules.crps_ensemble(rows.realised_close.to_numpy(), f.samples.T.astype(np.float64),
                                              estimator="fair")  # fmt: skip
        np.testing.assert_allclose(rows.crps, expected, rtol=1e-5)
        y, steps = rows.realised_close.to_numpy(), rows.step.to_numpy()
        pit = randomized_pit(f.samples.T, y, step_uniform(np.full(len(steps), pid), steps))
        np.testing.assert_allclose(rows.pit, pit, rtol=1e-12)  # where the outcome fell among the step's samples
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE signal_evaluations"))
        conn.execute(sa.text("INSERT INTO scoring_backlog SELECT id, timeframe FROM ml_predictions"))
    run_scoring(Settings(), engine, "1h", as_of=START + 118 * H)
    at_once = evaluations_frame(engine).sort_values(["prediction_id", "step"]).reset_index(drop=True)
    np.testing.assert_allclose(at_once.crps, stepwise.crps, rtol=1e-12)
    np.testing.assert_allclose(at_once.pit, stepwise.pit, rtol=1e-12)  # the same tie-breaking uniforms
    assert at_once.in_band.tolist() == stepwise.in_band.tolist()
    columns = prediction_samples(engine, ids[:2], [2, 3], [2, 6])  # step 2 of the first, steps 3-6 of the second
    np.testing.assert_array_equal(columns[ids[0]], forecasts[0].samples[:, 1:2])
    np.testing.assert_array_equal(columns[ids[1]], forecasts[1].samples[:, 2:6])


def test_a_forecast_leaves_the_backlog_once_every_step_is_scored_or_past(engine: Engine) -> None:
    closes = walk_closes(100)
    gap = closes.ts.iloc[92]
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", closes[closes.ts != gap].iloc[:94])  # candles up to 93, none at 92
    (pid,) = write(engine, sampled_forecast(closes, 90, seed=0))  # steps at 90, 91, 92 (missing), 93
    at = closes.ts.iloc[93].to_pydatetime()  # candle 93 not closed yet
    assert run_scoring(Settings(), engine, "1h", as_of=at).steps_scored == 2
    assert scoring_backlog_ids(engine) == [pid]  # step 4's candle may still close, step 3's may still come
    later = at + H  # candle 93 closed: step 3's candle is missing while a later one printed
    result = run_scoring(Settings(), engine, "1h", as_of=later)
    assert (result.steps_scored, result.forecasts_settled) == (1, 1) and scoring_backlog_ids(engine) == []

    # A candle loaded later into the old gap is not seen by the backlog, but a re-check finds it.
    with engine.begin() as conn:
        upsert_candles(conn, "BTCUSDT", "1h", closes[closes.ts == gap])
    assert run_scoring(Settings(), engine, "1h", as_of=later).steps_scored == 0
    assert run_scoring(Settings(), engine, "1h", as_of=later, since=START).steps_scored == 1
    assert evaluations_frame(engine, pid).step.tolist() == [1, 2, 3, 4]

    # Rewriting the forecast puts it back in the backlog, and it is scored afresh.
    write(engine, sampled_forecast(closes, 90, seed=5))
    assert scoring_backlog_ids(engine) == [pid]
    assert run_scoring(Settings(), engine, "1h", as_of=later).steps_scored == 4


def test_rescore_recomputes_every_score_with_the_current_definitions(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, *(sampled_forecast(market, k, seed=k) for k in range(70, 76)))
    end = START + HOURS * H
    run_scoring(Settings(), engine, "1h", as_of=end)
    expected = evaluations_frame(engine)
    with engine.begin() as conn:  # scores as an older version stored them: plain CRPS, no reference
        conn.execute(sa.text("UPDATE signal_evaluations SET crps = crps * 1.03, crps_rw = NULL"))
    result = run_scoring(Settings(), engine, "1h", as_of=end, rescore=True)
    assert (result.scores_reopened, result.steps_scored) == (24, 24)
    again = evaluations_frame(engine)
    np.testing.assert_allclose(again.crps, expected.crps, rtol=1e-12)
    np.testing.assert_allclose(again.crps_rw, expected.crps_rw, rtol=1e-12)


def test_performance_has_a_row_per_step_and_one_for_all_steps(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, *(sampled_forecast(market, k, seed=k) for k in range(70, 150)))
    write(engine, *(sampled_forecast(market, k, seed=k, model="coin") for k in range(70, 150, 3)))
    end = START + HOURS * H
    run_scoring(Settings(), engine, "1h", as_of=end)
    with engine.begin() as conn:  # a step scored before the reference existed (see migration 0007)
        conn.execute(sa.text("UPDATE signal_evaluations SET crps_rw = NULL WHERE prediction_id = 1 AND step = 2"))
    refresh_performance(engine, "1h")
    scored = evaluations_frame(engine)
    scored = scored[scored.model_name == "walk"].sort_values(["as_of", "step"])
    rows = {r.step: r for r in performance(engine, model_name="walk", window="all", step=None)}
    assert sorted(rows) == [0, 1, 2, 3, 4]
    for step, row in rows.items():
        part = scored if step == 0 else scored[scored.step == step]
        paired = part[part.crps_rw.notna()]
        assert (row.n_steps, row.n_predictions) == (len(part), part.prediction_id.nunique())
        assert row.hit_rate == pytest.approx(part.direction_hit.mean())
        assert row.coverage == pytest.approx(part.in_band.mean()) == row.coverage_raw
        assert row.mean_crps == pytest.approx(part.crps.mean())
        assert row.mean_crps_rw == pytest.approx(paired.crps_rw.mean())
        assert row.crps_skill == pytest.approx(1 - paired.crps.sum() / paired.crps_rw.sum())
        assert row.crps_bp == pytest.approx((part.crps / part.last_close).mean() * 1e4)
        assert row.mean_pinball == pytest.approx(((part.pinball_10 + part.pinball_50 + part.pinball_90) / 3).mean())
        if step == 0:  # each forecast's mean differential, with the overlap of the 4-step horizon
            d = (paired.crps - paired.crps_rw).groupby(paired.as_of).mean().to_numpy()
            expected_dm = diebold_mariano(d, lag=3)
            returns, periods = scored[scored.step == 1].strategy_return, 8760
        else:
            expected_dm = diebold_mariano((paired.crps - paired.crps_rw).to_numpy(), lag=step - 1)
            returns, periods = part.strategy_return, 8760 / step
        assert (row.dm_stat, row.dm_pvalue) == pytest.approx(expected_dm)
        assert row.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(periods))
        assert row.first_as_of == part.as_of.min() and row.last_as_of == part.as_of.max()
    # The default read is the all-steps row, with the meaning the single row had before.
    (default,) = performance(engine, model_name="walk", window="all")
    assert default == rows[0]
    assert {r.step for r in performance(engine, model_name="coin", step=None)} == {0, 1, 2, 3, 4}


def test_refreshed_from_is_the_time_scoring_reached_not_the_wall_clock(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, *(sampled_forecast(market, k, seed=k) for k in range(70, 80)))
    reached = START + 90 * H
    run_scoring(Settings(), engine, "1h", as_of=reached)
    assert {r.refreshed_from for r in performance(engine, window=None, step=None)} == {reached}
    run_scoring(Settings(), engine, "1h", as_of=reached - 5 * H)  # a back-dated run does not move it back
    assert {r.refreshed_from for r in performance(engine, window=None, step=None)} == {reached}
    assert scored_through(engine, "1h") == reached and scored_through(engine, "1d") is None


def test_the_trailing_window_and_calibration_cover_the_last_30_days_of_forecasts(engine: Engine) -> None:
    days = 120
    closes = walk_closes(days)
    closes["ts"] = pd.date_range(START, periods=days, freq="D", tz="UTC")
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1d", closes)
    forecasts = []
    for k in range(65, 110):
        f = sampled_forecast(closes, k, seed=k, steps=3)
        width = 0.5 if k < 90 else 3.0  # narrow bands first, then wide ones
        mid = f.p50
        forecasts.append(Prediction(
            symbol=f.symbol, timeframe="1d", model_name="walk", as_of=f.as_of,
            target_ts=[f.as_of + timedelta(days=h) for h in range(3)], p10=mid * (1 - 0.01 * width), p50=mid,
            p90=mid * (1 + 0.01 * width), last_close=f.last_close, samples=f.samples,
        ))  # fmt: skip
    write(engine, *forecasts)
    run_scoring(Settings(), engine, "1d", as_of=START + timedelta(days=days))
    scored = evaluations_frame(engine)
    recent = scored[scored.as_of > scored.as_of.max() - pd.Timedelta(days=30)]
    assert 0 < len(recent) < len(scored)
    (trailing,) = performance(engine, timeframe="1d", window="trailing_30d")
    assert (trailing.n_steps, trailing.coverage) == (len(recent), pytest.approx(recent.in_band.mean()))
    (everything,) = calibration(engine, timeframe="1d")
    (last_month,) = calibration(engine, timeframe="1d", window="trailing_30d")
    assert (everything.n_steps, last_month.n_steps) == (len(scored), len(recent))
    assert last_month.in_band == pytest.approx(recent.in_band.mean()) == last_month.in_band_raw
    assert last_month.below_p10 == pytest.approx((recent.realised_close < recent.p10).mean())
    assert last_month.in_band != everything.in_band


def test_concurrent_refreshes_never_interleave(engine: Engine, market: pd.DataFrame) -> None:
    write(engine, *(sampled_forecast(market, k, seed=k) for k in range(70, 100)))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    expected = performance(engine, window=None, step=None)
    with ThreadPoolExecutor(max_workers=4) as pool:
        written = list(pool.map(lambda k: refresh_performance(engine, "1h", full=k % 2 == 0), range(8)))
    # a full refresh rewrites every row; an incremental one with no scores changed since the last writes none
    assert written == [len(expected), 0] * 4
    assert performance(engine, window=None, step=None) == expected
