"""Walk-forward replay: batch and score at each historical slot, with no look-ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.jobs.replay import busiest_window, replay_slots, run_replay
from candlecast.store.candles import upsert_candles
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.jobs import recent_job_runs
from candlecast.store.performance import performance
from candlecast.store.predictions import Prediction, latest_prediction

from .conftest import job_settings, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
FIRST, LAST = START + 80 * H, START + 110 * H
T = START + 95 * H  # the slot under test


def forecasts_at(engine: Engine, as_of: datetime) -> dict[str, Prediction]:
    out = {}
    for symbol in SYMBOLS:
        p = latest_prediction(engine, symbol, "baseline", "1h", with_samples=True, as_of=as_of)
        assert p is not None and p.as_of == as_of
        out[symbol] = p
    return out


def rewrite_candles(engine: Engine, frames: dict[str, pd.DataFrame], when: pd.Series) -> None:
    """Rewrite the candles selected by ``when`` with very different prices (the whole OHLC scaled by 3)."""
    with engine.begin() as conn:
        for symbol, frame in frames.items():
            changed = frame[when(frame)].copy()
            for column in ("open", "high", "low", "close"):
                changed[column] *= 3.0
            upsert_candles(conn, symbol, "1h", changed)


def assert_same(a: dict[str, Prediction], b: dict[str, Prediction]) -> None:
    for symbol in SYMBOLS:
        np.testing.assert_array_equal(a[symbol].p50, b[symbol].p50)
        np.testing.assert_array_equal(a[symbol].samples, b[symbol].samples)
        assert a[symbol].last_close == b[symbol].last_close


def test_replay_slots_cover_the_range_on_the_grid() -> None:
    slots = replay_slots("1h", START + 30 * timedelta(minutes=1), START + 6 * H, every=2)
    assert slots == [START, START + 2 * H, START + 4 * H, START + 6 * H]
    with pytest.raises(ValueError, match="every"):
        replay_slots("1h", START, START + H, every=0)


def test_replay_scores_each_slot_with_candles_closed_by_then(engine: Engine) -> None:
    load_market(engine, SYMBOLS, START, 120)
    settings = job_settings()  # pred_len 4
    result = run_replay(settings, engine, "1h", "baseline", FIRST, LAST, every=5, progress=False)
    assert result.slots == 7 and result.predictions_written == 7 * 2 and result.symbols_failed == 0
    # at the last slot (T+15h), its own forecast has no closed target yet; the one 5 h earlier is complete
    scored = evaluations_frame(engine)
    assert len(scored) == result.steps_scored == 6 * 2 * 4
    assert (scored.target_ts + H <= pd.Timestamp(LAST)).all()
    (run,) = recent_job_runs(engine, "replay-baseline-1h")
    assert run.status == "ok" and run.counts["slots"] == 7
    assert recent_job_runs(engine, "batch-baseline-1h") == []  # one record for the whole replay
    rows = performance(engine, model_name="baseline", window="all")
    assert {r.symbol for r in rows} == set(SYMBOLS) and all(r.n_predictions == 6 for r in rows)


def test_changing_candles_after_a_slot_never_changes_its_forecast(engine: Engine) -> None:
    frames = load_market(engine, SYMBOLS, START, 120)
    settings = job_settings()
    run_replay(settings, engine, "1h", "baseline", FIRST, LAST, every=5, progress=False)
    before, later = forecasts_at(engine, T), forecasts_at(engine, T + 5 * H)

    # Every candle that had not closed by T (open time >= T) changes; T's forecast must not.
    rewrite_candles(engine, frames, lambda f: f.ts >= pd.Timestamp(T))
    run_replay(settings, engine, "1h", "baseline", FIRST, LAST, every=5, progress=False)
    assert_same(before, forecasts_at(engine, T))
    # ... while the forecasts that saw the changed candles did change (the change was visible at all)
    changed = forecasts_at(engine, T + 5 * H)
    assert all(changed[s].last_close == pytest.approx(3 * later[s].last_close) for s in SYMBOLS)

    # And the last candle closed by T (opened at T - 1h) does feed T's forecast.
    rewrite_candles(engine, frames, lambda f: f.ts == pd.Timestamp(T - H))
    run_replay(settings, engine, "1h", "baseline", T, T, progress=False)
    moved = forecasts_at(engine, T)
    assert all(moved[s].last_close != before[s].last_close for s in SYMBOLS)
    with engine.connect() as conn:  # every replay rewrote slots in place
        assert conn.execute(sa.text("SELECT count(*) FROM ml_predictions")).scalar() == 7 * 2


def test_default_replay_window_is_where_most_instruments_have_data(engine: Engine) -> None:
    load_market(engine, ["BTCUSDT", "ETHUSDT"], START, 24 * 40)  # 40 days from March 1st
    load_market(engine, ["SOLUSDT"], START + timedelta(days=200), 24 * 10)  # later, but alone
    first, last = busiest_window(engine, "1h", days=20)
    assert last == START + timedelta(days=40) and first == last - timedelta(days=20)
    with pytest.raises(ValueError, match="no active instrument"):
        busiest_window(engine, "1d", days=20)


def test_replaying_a_stretch_again_never_loses_scores(engine: Engine) -> None:
    load_market(engine, SYMBOLS, START, 120)
    settings = job_settings()  # pred_len 4
    run_replay(settings, engine, "1h", "baseline", FIRST, LAST, every=1, progress=False)
    before = evaluations_frame(engine)
    performance_before = {(r.symbol, r.window_name): r for r in performance(engine, window=None)}
    assert {r.refreshed_from for r in performance_before.values()} == {LAST}  # the replayed time, not now

    # The first half again: its forecasts are rewritten (their scores deleted) and scored slot by slot; the
    # steps of its last forecasts that closed after its last slot are scored as of where scoring had been.
    middle = START + 95 * H
    again = run_replay(settings, engine, "1h", "baseline", FIRST, middle, every=1, progress=False)
    after = evaluations_frame(engine)
    assert len(after) == len(before)
    key = ["prediction_id", "step"]
    assert after[key].values.tolist() == before[key].values.tolist()
    # the baseline draws its paths from a fixed seed: the same forecasts, so the same scores
    np.testing.assert_allclose(after.crps.to_numpy(), before.crps.to_numpy())
    assert again.steps_scored == len(after[after.as_of <= pd.Timestamp(middle)])
    for (symbol, window), row in performance_before.items():
        (now,) = performance(engine, symbol=symbol, window=window)
        assert (now.n_predictions, now.n_steps, now.refreshed_from) == (row.n_predictions, row.n_steps, LAST)
