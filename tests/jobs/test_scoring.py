"""The scoring job on hand-made forecasts whose scores are worked out by hand below."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import scoringrules
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.scoring import run_scoring
from candlecast.scores import crps_from_samples
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.jobs import recent_job_runs
from candlecast.store.performance import performance
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


def test_crps_from_samples_matches_the_energy_form_of_scoringrules() -> None:
    rng = np.random.default_rng(7)
    samples, observed = rng.normal(size=(500, 33)), rng.normal(size=500)
    expected = scoringrules.crps_ensemble(observed, samples, estimator="nrg")
    np.testing.assert_allclose(crps_from_samples(samples, observed), expected, rtol=1e-12, atol=1e-12)


def test_scores_match_hand_computed_values(store: Engine) -> None:
    result = run_scoring(Settings(), store, "1h", as_of=T0 + 2 * H)
    # closed by T0+2h: the candles at T0 and T0+1h. Forecast 1 steps 1-2, forecast 2 step 1.
    assert (result.steps_scored, result.predictions_scored) == (3, 2)
    rows = evaluations_frame(store).set_index(["prediction_id", "step"])
    first, second, later = rows.loc[(1, 1)], rows.loc[(1, 2)], rows.loc[(2, 1)]

    # forecast 1, step 1: y = 103, c0 = 100, p10/p50/p90 = 100/102/105, samples 99 101 104 106.
    # mean|X - y| = (4 + 2 + 1 + 3) / 4 = 2.5; sum of |x_i - x_j| over ordered pairs = 2 * 24 = 48,
    # so 1/2 mean|X - X'| = 48 / 16 / 2 = 1.5 and CRPS = 1.0.
    assert first.realised_close == 103 and first.direction_hit and first.in_band
    assert first.crps == pytest.approx(1.0)
    assert (first.pinball_10, first.pinball_50, first.pinball_90) == pytest.approx((0.3, 0.5, 0.2))
    assert (first.realised_return, first.strategy_return) == pytest.approx((0.03, 0.03))
    assert first.target_ts == T0 and first.p50 == 102 and first.last_close == 100

    # forecast 1, step 2: y = 98 below p10 = 98.5; p50 100.5 says up, the close went down.
    # mean|X - y| = (1 + 2 + 2 + 5) / 4 = 2.5; pairs 2 * 18 = 36 -> 36 / 16 / 2 = 1.125; CRPS = 1.375.
    assert not second.direction_hit and not second.in_band
    assert second.crps == pytest.approx(1.375)
    assert (second.pinball_10, second.pinball_50, second.pinball_90) == pytest.approx((0.45, 1.25, 0.4))
    assert (second.realised_return, second.strategy_return) == pytest.approx((-0.02, -0.02))

    # forecast 2, step 1: c0 = 103, p50 = 104 (up), y = 98 (down): a miss, and below p10 = 99.
    assert not later.direction_hit and not later.in_band
    assert later.strategy_return == pytest.approx(98 / 103 - 1)


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
    # -> 58/16/2 = 1.8125; CRPS 1.4375. (2,1): samples 98 103 105 106 vs 98: (0+5+7+8)/4 = 5;
    # pairs 2*(5+7+8+2+3+1) = 52 -> 1.625; CRPS 3.375.
    assert row.mean_crps == pytest.approx((1.0 + 1.375 + 3.375 + 1.4375) / 4)
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
