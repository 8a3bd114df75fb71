"""Calibration in the batch job, against real Postgres and the in-process baseline: no look-ahead, the served
band and samples, the setting that turns it off, failures, and scoring of the raw band."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.inference.transports import ForecastTransport, open_transport
from candlecast.jobs.batch import run_batch
from candlecast.jobs.calibrate import calibrate_predictions
from candlecast.jobs.replay import run_replay
from candlecast.jobs.scoring import run_scoring
from candlecast.store import create_engine_for
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.performance import performance
from candlecast.store.predictions import Prediction, calibration_history, latest_prediction, upsert_prediction

from .conftest import job_settings, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
FIRST = START + 64 * H  # the first slot with a full 64-candle context
T = FIRST + 30 * H  # the slot under test: 30 earlier slots, 4 steps each


def settings(calibrate: bool = True, **calibration: object) -> Settings:
    """4-step hourly forecasts, 16 samples; step h is calibrated once max(5, 5 h) of its outcomes are known."""
    return job_settings(calibrate=calibrate, calibration={"min_outcomes": 5, "halflife": 5.0, **calibration})


@pytest.fixture
def transport() -> Iterator[ForecastTransport]:
    model = open_transport(settings(), "baseline", local=True)
    yield model
    model.close()


def batch(
    engine: Engine, slot: datetime, transport: ForecastTransport, calibrate: bool = True, **calibration: object
) -> None:
    config = settings(calibrate, **calibration)
    result = run_batch(config, engine, "1h", "baseline", as_of=slot, progress=False, transport=transport, record=False)
    assert result.ok == tuple(SYMBOLS), result.failed or result.skipped


def market_and_slots(engine: Engine, transport: ForecastTransport) -> dict[str, pd.DataFrame]:
    """140 hourly candles, then calibrated forecasts at the 31 slots FIRST .. T (T's calibration sees 30)."""
    frames = load_market(engine, SYMBOLS, START, 140)
    for k in range(31):
        batch(engine, FIRST + k * H, transport)
    return frames


def stored(engine: Engine, slot: datetime) -> dict[str, Prediction]:
    out = {}
    for symbol in SYMBOLS:
        p = latest_prediction(engine, symbol, "baseline", "1h", with_samples=True, as_of=slot)
        assert p is not None and p.as_of == slot
        out[symbol] = p
    return out


def test_calibration_uses_no_outcome_after_the_slot(engine: Engine, transport: ForecastTransport) -> None:
    frames = market_and_slots(engine, transport)
    before = stored(engine, T)
    for p in before.values():
        assert p.calibration is not None and p.calibration["status"] == "calibrated"
        assert not np.allclose(p.p10, p.p10_raw)  # there is something to compare

    # what the slot may know: outcomes up to the candle of T - 1h, which closed at T
    history = calibration_history(engine, "1h", "baseline", T, SYMBOLS, lookback=1000, candles_back=30)["BTCUSDT"]
    last_known = (T - H - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)  # raw Postgres time
    assert history.target_ts.max() == last_known == history.candle_ts.max()

    # rewrite every outcome after the slot: the candles that close after T and the forecasts made after T
    with engine.begin() as conn:
        for i, symbol in enumerate(SYMBOLS):
            later = frames[symbol][frames[symbol].ts >= T].copy()
            shock = np.exp(np.random.default_rng(i).normal(0, 0.2, len(later))).cumprod()
            for column in ("open", "high", "low", "close"):
                later[column] *= shock
            later["high"] = later[["open", "high", "low", "close"]].max(axis=1)
            later["low"] = later[["open", "high", "low", "close"]].min(axis=1)
            upsert_candles(conn, symbol, "1h", later)
    for k in range(1, 8):
        batch(engine, T + k * H, transport)  # later forecasts, from the rewritten candles
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ml_predictions SET p10 = p50, p90 = p50, calibration = NULL WHERE as_of > :t"),
                     {"t": T})  # fmt: skip

    batch(engine, T, transport)  # the slot again
    after = stored(engine, T)
    for symbol in SYMBOLS:
        a, b = before[symbol], after[symbol]
        np.testing.assert_array_equal(a.p10, b.p10)
        np.testing.assert_array_equal(a.p90, b.p90)
        np.testing.assert_array_equal(a.samples, b.samples)
        assert a.calibration == b.calibration

    # whereas an outcome known at the slot does count: a past forecast's band changes the calibration
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ml_predictions SET p10_raw = p50 WHERE as_of BETWEEN :a AND :b"),
            {"a": T - 20 * H, "b": T - 5 * H},
        )  # fmt: skip
    batch(engine, T, transport)
    changed = stored(engine, T)
    assert not np.array_equal(changed["BTCUSDT"].p10, before["BTCUSDT"].p10)


def test_per_side_calibration_moves_p10_and_p90_by_their_own_shifts(
    engine: Engine, transport: ForecastTransport
) -> None:
    market_and_slots(engine, transport)
    batch(engine, T, transport, sides=True, memory=50.0)  # the slot again, each side tracked at 10%
    for p in stored(engine, T).values():
        record = p.calibration
        assert record is not None and record["method"] == "quantile-tracking per side" and record["memory"] == 50.0
        assert set(record["score"]) == {"p10", "p90"} and record["status"] == "calibrated"
        steps = record["steps"]
        assert steps["q_lower"] != steps["q_upper"]
        assert p.p10_raw is not None and p.p90_raw is not None and p.samples is not None
        scale = record["sigma"] * p.last_close
        np.testing.assert_allclose(p.p10, p.p10_raw - np.array(steps["q_lower"]) * scale)
        np.testing.assert_allclose(p.p90, p.p90_raw + np.array(steps["q_upper"]) * scale)
        p10, p90 = np.quantile(p.samples.astype(np.float64), [0.1, 0.9], axis=0)
        np.testing.assert_allclose(p10, p.p10, rtol=1e-5)
        np.testing.assert_allclose(p90, p.p90, rtol=1e-5)


def test_the_served_band_and_samples_are_calibrated_and_the_raw_band_is_kept(
    engine: Engine, transport: ForecastTransport
) -> None:
    market_and_slots(engine, transport)
    first, calibrated = stored(engine, FIRST), stored(engine, T)
    batch(engine, T, transport, calibrate=False)  # the same slot (same seeds) served raw
    raw = stored(engine, T)
    for symbol in SYMBOLS:
        assert first[symbol].calibration is not None
        assert first[symbol].calibration["status"] == "too few outcomes"  # nothing realised yet: the raw band
        np.testing.assert_array_equal(first[symbol].p10, first[symbol].p10_raw)

        c, r = calibrated[symbol], raw[symbol]
        assert r.calibration == {"status": "off"}
        np.testing.assert_array_equal(r.p10, r.p10_raw)
        np.testing.assert_array_equal(r.p90, r.p90_raw)
        np.testing.assert_array_equal(c.p10_raw, r.p10)  # the model's own band is kept as it came
        np.testing.assert_array_equal(c.p90_raw, r.p90)
        np.testing.assert_array_equal(c.p50, r.p50)

        record = c.calibration
        assert record is not None and record["status"] == "calibrated" and record["steps_calibrated"] == 4
        assert record["method"] == "quantile-tracking" and record["gamma"] == 0.1
        assert record["memory"] is None and record["forecasts_read"] == 30
        steps = record["steps"]
        assert steps["n_outcomes"] == [30, 29, 28, 27]  # forecasts of T - h - 29 .. T - h had step h realised
        assert all(isinstance(v, float) for v in steps["alpha"])
        # each side's pooled integrator: the running mean over steps 1..h of each step's own integrator
        for side in ("drift_lower", "drift_upper"):
            assert len(steps[side]) == 4 and all(isinstance(v, float) for v in steps[side])
        assert steps["q_lower"] == steps["q_upper"]  # two-sided: both sides move by the same amount
        scale = record["sigma"] * c.last_close  # each side moves by its q volatilities
        np.testing.assert_allclose(c.p10, c.p10_raw - np.array(steps["q_lower"]) * scale)
        np.testing.assert_allclose(c.p90, c.p90_raw + np.array(steps["q_upper"]) * scale)

        # the samples read back the served band and keep the median
        assert c.samples is not None and r.samples is not None
        p10, p50, p90 = np.quantile(c.samples.astype(np.float64), [0.1, 0.5, 0.9], axis=0)
        np.testing.assert_allclose(p10, c.p10, rtol=1e-6)
        np.testing.assert_allclose(p90, c.p90, rtol=1e-6)
        np.testing.assert_allclose(p50, np.quantile(r.samples.astype(np.float64), 0.5, axis=0), rtol=1e-6)


def test_replays_calibrate_as_they_go_and_score_both_bands(engine: Engine) -> None:
    load_market(engine, SYMBOLS, START, 140)
    result = run_replay(settings(), engine, "1h", "baseline", FIRST, T + 4 * H, progress=False)
    assert result.predictions_written == 2 * 35
    statuses = [stored(engine, FIRST + k * H)["BTCUSDT"].calibration["status"] for k in range(35)]
    # step h is calibrated once max(5, 5 h) of its outcomes are known: step 1 from the 6th slot, step 4 from the 24th
    assert statuses[:5] == ["too few outcomes"] * 5 and statuses[5] == "partial"
    assert statuses[22] == "partial" and statuses[23:] == ["calibrated"] * 12

    scores = evaluations_frame(engine)
    with engine.connect() as conn:
        bands = conn.execute(sa.text("SELECT id, p10, p90, p10_raw, p90_raw FROM ml_predictions")).all()
    band = {row[0]: row[1:] for row in bands}
    served = [band[e.prediction_id][0][e.step - 1] <= e.realised_close <= band[e.prediction_id][1][e.step - 1]
              for e in scores.itertuples()]  # fmt: skip
    own = [band[e.prediction_id][2][e.step - 1] <= e.realised_close <= band[e.prediction_id][3][e.step - 1]
           for e in scores.itertuples()]  # fmt: skip
    assert scores.in_band.tolist() == served and scores.in_band_raw.tolist() == own
    assert served != own  # the calibrated band differs from the model's somewhere
    (row,) = performance(engine, symbol="BTCUSDT", model_name="baseline", timeframe="1h")
    assert row.coverage == pytest.approx(np.mean(scores[scores.symbol == "BTCUSDT"].in_band))
    assert row.coverage_raw == pytest.approx(np.mean(scores[scores.symbol == "BTCUSDT"].in_band_raw))


def test_scoring_reads_the_raw_band_where_one_is_stored(engine: Engine) -> None:
    t0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        closes = {t0 - H: 100.0, t0: 103.0, t0 + H: 96.0}
        upsert_candles(conn, "BTCUSDT", "1h", pd.DataFrame({"ts": list(closes), "close": list(closes.values())}))

        def forecast(as_of: datetime, p10: list[float], p90: list[float], raw: tuple | None) -> Prediction:
            return Prediction(
                symbol="BTCUSDT", timeframe="1h", model_name="hand", as_of=as_of, target_ts=[t0, t0 + H],
                p10=p10, p50=[100.0, 100.0], p90=p90, last_close=100.0,
                p10_raw=None if raw is None else raw[0], p90_raw=None if raw is None else raw[1],
            )  # fmt: skip

        # served [97, 104] holds 103 and 96 is below it; the raw [101, 102] holds neither... then the reverse
        upsert_prediction(conn, forecast(t0, [97, 97], [104, 104], ([101, 95], [102, 97])))
        upsert_prediction(conn, forecast(t0 - 2 * H, [97, 97], [104, 104], None))  # an older row: no raw band
    run_scoring(Settings(), engine, "1h", as_of=t0 + 2 * H)
    scores = evaluations_frame(engine).set_index(["as_of", "step"])
    assert scores.loc[(t0, 1), ["in_band", "in_band_raw"]].tolist() == [True, False]
    assert scores.loc[(t0, 2), ["in_band", "in_band_raw"]].tolist() == [False, True]
    older = scores.loc[t0 - 2 * H]
    assert older.in_band.tolist() == older.in_band_raw.tolist() == [True, False]


def test_a_calibration_that_cannot_read_its_history_serves_the_raw_band() -> None:
    unreachable = create_engine_for("postgresql+psycopg://candlecast@127.0.0.1:9/nowhere?connect_timeout=2")
    p = Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name="baseline", as_of=START, target_ts=[START],
        p10=[99.0], p50=[100.0], p90=[101.0], last_close=100.0,
    )  # fmt: skip
    try:
        (out,) = calibrate_predictions(settings(), unreachable, [p])
    finally:
        unreachable.dispose()
    assert out.calibration is not None and out.calibration["status"] == "error"
    assert "OperationalError" in out.calibration["reason"]
    assert (out.p10.tolist(), out.p90.tolist(), out.p10_raw.tolist()) == ([99.0], [101.0], [99.0])


def test_the_history_holds_realised_stored_steps_with_raw_and_governed_sides(engine: Engine) -> None:
    t0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        closes = {t0 - 2 * H: 99.0, t0 - H: 100.0, t0 + H: 102.0, t0 + 2 * H: 103.0}  # no candle at t0
        upsert_candles(conn, "BTCUSDT", "1h", pd.DataFrame({"ts": list(closes), "close": list(closes.values())}))

        def forecast(as_of: datetime, **extra: object) -> Prediction:
            return Prediction(
                symbol="BTCUSDT", timeframe="1h", model_name="m", as_of=as_of,
                target_ts=[as_of + k * H for k in range(3)], p10=[90.0, 91.0, 92.0], p50=[100.0] * 3,
                p90=[110.0, 111.0, 112.0], last_close=99.0, **extra,
            )  # fmt: skip

        upsert_prediction(conn, forecast(t0 - H))  # written before calibration existed: no raw band, no record
        steps = {"alpha": [0.2, 0.18, None]}
        upsert_prediction(
            conn, forecast(t0, p10_raw=[80, 81, 82], p90_raw=[120, 121, 122], calibration={"steps": steps})
        )
        upsert_prediction(conn, forecast(t0 + 2 * H))  # made at the slot: not before it
    (history,) = calibration_history(engine, "1h", "m", t0 + 2 * H, ["BTCUSDT"], lookback=10, candles_back=5).values()
    # realised by the slot (t0 + 2h): candles up to t0 + 1h; t0 has no candle
    assert history.step.tolist() == [1, 3, 2]
    assert history.realised.tolist() == [100.0, 102.0, 102.0]
    assert history.served_lower.tolist() == [90.0, 92.0, 91.0]
    assert history.raw_lower.tolist() == [90.0, 92.0, 81.0] and history.raw_upper.tolist() == [110.0, 112.0, 121.0]
    assert history.governed.tolist() == [False, False, True]
    assert history.candle_ts.max() == (t0 + H - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_ohlc_paths_are_stretched_with_their_closes() -> None:
    """calibrate_one moves a forecast's highs and lows by the map that moves its closes (on a history whose raw
    bands were too narrow, so the served band widens)."""
    from candlecast.config import CalibrationSettings
    from candlecast.jobs.calibrate import calibrate_one
    from candlecast.store.predictions import CalibrationHistory

    rng = np.random.default_rng(0)
    n_past, steps, hour = 60, 2, 3_600_000_000
    candle_ts = np.arange(200, dtype=np.int64) * hour
    candle_close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200)))
    origin = np.repeat(np.arange(100, 100 + n_past, dtype=np.int64) * hour, steps)
    step = np.tile(np.arange(1, steps + 1, dtype=np.int32), n_past)
    target_ts = origin + (step.astype(np.int64) - 1) * hour
    realised = 100 + rng.normal(0, 2, len(step))
    history = CalibrationHistory(
        origin=origin, step=step, target_ts=target_ts, last_close=np.full(len(step), 100.0),
        realised=realised, raw_lower=np.full(len(step), 99.5), raw_upper=np.full(len(step), 100.5),
        served_lower=np.full(len(step), 99.5), served_upper=np.full(len(step), 100.5),
        governed=np.zeros(len(step), dtype=bool), candle_ts=candle_ts, candle_close=candle_close,
    )  # fmt: skip
    closes = 100 + rng.normal(0, 0.4, (32, steps))
    as_of = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(hours=170)
    p = Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name="kronos", as_of=as_of, target_ts=[as_of, as_of + H],
        p10=np.quantile(closes, 0.1, axis=0), p50=np.quantile(closes, 0.5, axis=0),
        p90=np.quantile(closes, 0.9, axis=0), last_close=100.0, samples=closes, samples_high=closes + 0.3,
        samples_low=closes - 0.3,
    )  # fmt: skip
    out = calibrate_one(p, history, CalibrationSettings())
    assert out.calibration is not None and out.calibration["status"] == "calibrated"
    assert out.samples is not None and out.samples_high is not None and out.samples_low is not None
    assert (out.p90 - out.p10 > p.p90 - p.p10).all()  # widened
    assert (out.samples_high >= out.samples).all() and (out.samples_low <= out.samples).all()
    # the highs and lows spread out with the closes: the extremes of the paths widen as the band does
    assert (out.samples_high.max(axis=0) > p.samples_high.max(axis=0)).all()  # type: ignore[union-attr]
    assert (out.samples_low.min(axis=0) < p.samples_low.min(axis=0)).all()  # type: ignore[union-attr]
