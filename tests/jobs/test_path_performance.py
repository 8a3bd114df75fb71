"""The stored summary of graded touch questions (``path_performance``, jobs.touches.refresh_path_performance): equal
to scoring the questions ``graded_touches`` reads (every symbol or one, both windows), refreshed by the scoring
job and only then, idempotent, and forgetting deleted forecasts at the next refresh; in a real Postgres."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.scoring import run_scoring
from candlecast.jobs.touches import refresh_path_performance
from candlecast.paths import TOUCH_GRID, touch_scores
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.path_evaluations import (
    GradedTouches,
    PathPerformanceRow,
    graded_touches,
    path_evaluations_frame,
    path_performance,
)
from candlecast.store.predictions import Prediction, upsert_prediction

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SPY")
WINDOWS = ("all", "trailing_30d")


def insert_grades(engine: Engine, seed: int = 0) -> int:
    """Random graded questions straight into ``path_evaluations``: three symbols whose newest grades differ, two
    models, both timeframes, 80 days of origins (so the trailing window is a strict part), mixed bases, horizons
    and path counts. Returns the rows written."""
    rng = np.random.default_rng(seed)
    names = ("prediction_id", "k", "symbol", "timeframe", "model_name", "as_of", "horizon", "level", "side",
             "p_touch", "p_touch_rw", "paths", "touched", "uses")  # fmt: skip
    rows: dict[str, list] = {name: [] for name in names}
    pid = 0
    for s, symbol in enumerate(SYMBOLS):
        for model in ("garch", "kronos-small"):
            for timeframe, step, horizon in (("1h", timedelta(hours=5), 24), ("1d", timedelta(days=1), 5)):
                origins = [T0 + i * step for i in range(int((80 - 10 * s) * timedelta(days=1) / step))]
                for as_of in origins[:: 3 if timeframe == "1h" else 1]:
                    pid += 1
                    paths = int(rng.choice([16, 32]))
                    uses = "ohlc" if model == "kronos-small" and rng.random() < 0.7 else "close"
                    for k in TOUCH_GRID:
                        rows["prediction_id"].append(pid)
                        rows["k"].append(k)
                        rows["symbol"].append(symbol)
                        rows["timeframe"].append(timeframe)
                        rows["model_name"].append(model)
                        rows["as_of"].append(as_of)
                        rows["horizon"].append(horizon - (pid % 2 if timeframe == "1h" else 0))
                        rows["level"].append(100 * np.exp(0.01 * k))
                        rows["side"].append("above" if k > 0 else "below")
                        p = rng.integers(0, paths + 1) / paths
                        rows["p_touch"].append(p)
                        rows["p_touch_rw"].append(min(1.0, 2 * 0.16 / abs(k)))
                        rows["paths"].append(paths)
                        rows["touched"].append(bool(rng.random() < 0.6 * p + 0.1))
                        rows["uses"].append(uses)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO path_evaluations (prediction_id, k, symbol, timeframe, model_name, as_of, horizon, level,"
                " side, p_touch, p_touch_rw, paths, touched, uses) SELECT * FROM unnest(CAST(:prediction_id AS int8[]),"
                " CAST(:k AS int2[]), CAST(:symbol AS text[]), CAST(:timeframe AS text[]), CAST(:model_name AS text[]),"
                " CAST(:as_of AS timestamptz[]), CAST(:horizon AS int4[]), CAST(:level AS float8[]),"
                " CAST(:side AS text[]), CAST(:p_touch AS float8[]), CAST(:p_touch_rw AS float8[]),"
                " CAST(:paths AS int4[]), CAST(:touched AS bool[]), CAST(:uses AS text[]))"
            ),
            rows,
        )
    return len(rows["k"])


def none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else value


def assert_summary_of(stored: PathPerformanceRow, g: GradedTouches) -> None:
    """``stored`` is what ``paths.touch_scores`` makes of ``g``, worked out here."""
    score = touch_scores(g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max()))
    assert (stored.model_name, stored.timeframe) == (g.model_name, g.timeframe)
    assert (stored.forecasts, stored.questions) == (score.forecasts, score.questions)
    assert (stored.forecasts, stored.questions) == (len(np.unique(g.prediction_id)), len(g.prediction_id))
    assert stored.grid == list(TOUCH_GRID) and stored.uses == g.uses
    for name in ("brier", "brier_plain", "brier_rw", "skill", "dm_stat", "dm_pvalue", "base_rate"):
        expected = none_if_nan(getattr(score, name))
        assert getattr(stored, name) == (None if expected is None else pytest.approx(expected, rel=1e-9)), name
    table = score.reliability
    assert stored.reliability["count"] == table["count"].tolist()
    for name in ("lower", "upper", "mean_predicted", "observed"):
        expected = [none_if_nan(v) for v in table[name].tolist()]
        assert stored.reliability[name] == [None if v is None else pytest.approx(v, rel=1e-9) for v in expected]
    assert stored.decomposition == {k: pytest.approx(v, rel=1e-9) for k, v in score.decomposition.items()}
    epoch = datetime(2000, 1, 1, tzinfo=UTC)  # g.as_of: raw Postgres timestamps
    assert stored.first_as_of == epoch + timedelta(microseconds=int(g.as_of.min()))
    assert stored.last_as_of == epoch + timedelta(microseconds=int(g.as_of.max()))


def assert_equals_live(engine: Engine) -> int:
    """Every scope (all symbols, each symbol) and window: the stored rows are the summaries of ``graded_touches``.
    Returns how many rows were compared."""
    compared = 0
    for symbol in (None, *SYMBOLS):
        for window in WINDOWS:
            live = graded_touches(engine, symbol=symbol, window=window)
            stored = path_performance(engine, symbol=symbol, window=window)
            assert [(r.model_name, r.timeframe) for r in stored] == [(g.model_name, g.timeframe) for g in live]
            for row, g in zip(stored, live, strict=True):
                assert (row.scope, row.window_name) == (symbol or "*", window)
                assert_summary_of(row, g)
                compared += 1
    return compared


def test_the_stored_summary_is_the_touch_score_of_the_graded_questions_for_every_scope_and_window(
    engine: Engine,
) -> None:
    assert insert_grades(engine) > 5_000
    assert path_performance(engine) == []  # nothing until a refresh
    written = refresh_path_performance(engine)
    # 2 models x 2 timeframes x 2 windows, for every symbol together and for each of the 3
    assert written == 8 * (1 + len(SYMBOLS))
    assert assert_equals_live(engine) == written
    # the trailing window is a strict part of every series (the symbols' newest grades differ)
    for symbol in (None, *SYMBOLS):
        every = {(r.model_name, r.timeframe): r for r in path_performance(engine, symbol=symbol)}
        recent = path_performance(engine, symbol=symbol, window="trailing_30d")
        assert all(0 < r.forecasts < every[(r.model_name, r.timeframe)].forecasts for r in recent)
    # filters by model and timeframe read the same rows
    [one] = path_performance(engine, symbol="SPY", model_name="garch", timeframe="1d", window="trailing_30d")
    [live] = graded_touches(engine, symbol="SPY", model_name="garch", timeframe="1d", window="trailing_30d")
    assert_summary_of(one, live)
    assert path_performance(engine, symbol="QQQ") == [] and path_performance(engine, model_name="baseline") == []
    with pytest.raises(ValueError, match="window"):
        path_performance(engine, window="forever")


def test_a_refresh_of_one_timeframe_leaves_the_other_and_refreshing_again_changes_nothing(engine: Engine) -> None:
    insert_grades(engine)
    refresh_path_performance(engine)
    before = {(r.scope, r.model_name, r.timeframe, r.window_name): asdict(r) for r in _all_rows(engine)}
    with engine.begin() as conn:  # the daily grades of SPY go, behind the job's back
        conn.execute(sa.text("DELETE FROM path_evaluations WHERE timeframe = '1d' AND symbol = 'SPY'"))
    assert refresh_path_performance(engine, "1h") == 4 * (1 + len(SYMBOLS))
    after = {(r.scope, r.model_name, r.timeframe, r.window_name): asdict(r) for r in _all_rows(engine)}
    assert after.keys() == before.keys()
    for key, row in after.items():
        if key[2] == "1d":
            assert row == before[key]  # not refreshed: still counts SPY
        else:
            assert row["refreshed_at"] > before[key]["refreshed_at"]
            assert {**row, "refreshed_at": None} == {**before[key], "refreshed_at": None}  # the same numbers
    refresh_path_performance(engine, "1d")
    assert not [r for r in _all_rows(engine) if r.scope == "SPY" and r.timeframe == "1d"]
    assert assert_equals_live(engine) == 8 * (1 + len(SYMBOLS)) - 4  # SPY 1d: 2 models x 2 windows


def test_concurrent_refreshes_take_turns(engine: Engine) -> None:
    insert_grades(engine)
    with ThreadPoolExecutor(max_workers=4) as pool:
        written = list(pool.map(lambda k: refresh_path_performance(engine, None if k % 2 else "1h"), range(6)))
    assert written == [16, 32, 16, 32, 16, 32]
    assert assert_equals_live(engine) == 32


def _all_rows(engine: Engine, symbols: tuple[str, ...] = SYMBOLS) -> list[PathPerformanceRow]:
    return [r for s in (None, *symbols) for w in WINDOWS for r in path_performance(engine, symbol=s, window=w)]


# -- through the scoring job ------------------------------------------------------------------------

START = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
HOURS = 180
STEPS = 4


def walk(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, HOURS)))
    return pd.DataFrame({"ts": pd.date_range(START, periods=HOURS, freq="h", tz="UTC"), "close": close})


def forecast(market: pd.DataFrame, symbol: str, model: str, origin: int, seed: int) -> Prediction:
    rng = np.random.default_rng(seed)
    c0 = float(market.close.iloc[origin - 1])
    paths = c0 * np.exp(np.cumsum(rng.normal(0, 0.012 if model == "narrow" else 0.02, (16, STEPS)), axis=1))
    as_of = market.ts.iloc[origin].to_pydatetime()
    return Prediction(
        symbol=symbol, timeframe="1h", model_name=model, as_of=as_of, target_ts=[as_of + h * H for h in range(STEPS)],
        p10=np.quantile(paths, 0.1, axis=0), p50=np.median(paths, axis=0), p90=np.quantile(paths, 0.9, axis=0),
        last_close=c0, samples=paths,
    )  # fmt: skip


@pytest.fixture
def markets(engine: Engine) -> dict[str, pd.DataFrame]:
    frames = {"BTCUSDT": walk(1), "ETHUSDT": walk(2)}
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument(symbol, "crypto") for symbol in frames])
        for symbol, frame in frames.items():
            upsert_candles(conn, symbol, "1h", frame)
    return frames


def write_forecasts(engine: Engine, markets: dict[str, pd.DataFrame], origins: range) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for s, (symbol, market) in enumerate(markets.items()):
            for model in ("narrow", "wide"):
                for origin in origins:
                    ids.append(upsert_prediction(conn, forecast(market, symbol, model, origin, seed=origin + 1000 * s)))
    return ids


def stored_rows(engine: Engine) -> dict[tuple[str, str, str, str], dict]:
    """Every stored row but its refresh time."""
    return {
        (r.scope, r.model_name, r.timeframe, r.window_name): {k: v for k, v in asdict(r).items() if k != "refreshed_at"}
        for r in _all_rows(engine, ("BTCUSDT", "ETHUSDT"))
    }


def test_scoring_refreshes_the_summary_unless_told_not_to_and_scoring_again_changes_nothing(
    engine: Engine, markets: dict[str, pd.DataFrame]
) -> None:
    write_forecasts(engine, markets, range(80, 140, 3))  # 20 forecasts per (symbol, model)
    first = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert first.touch_forecasts == 80
    rows = stored_rows(engine)
    assert len(rows) == 2 * 2 * (1 + 2)  # 2 models x 2 windows x (all, BTCUSDT, ETHUSDT)
    assert rows[("*", "narrow", "1h", "all")]["forecasts"] == 40
    assert rows[("ETHUSDT", "wide", "1h", "all")]["questions"] == 20 * len(TOUCH_GRID)
    for symbol in (None, "BTCUSDT", "ETHUSDT"):
        for window in WINDOWS:
            stored = path_performance(engine, symbol=symbol, window=window)
            for row, g in zip(stored, graded_touches(engine, symbol=symbol, window=window), strict=True):
                assert_summary_of(row, g)
    # scoring again, and a re-check of every forecast: the same rows
    again = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H, since=START)
    assert again.touch_questions == 0 and stored_rows(engine) == rows
    # rescoring grades everything again, to the same numbers
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H, rescore=True)
    assert stored_rows(engine) == rows
    # refresh=False grades new forecasts but leaves the summary as it was; the next refresh counts them
    write_forecasts(engine, markets, range(150, 160, 3))
    quiet = run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H, refresh=False)
    assert quiet.touch_forecasts == 16 and stored_rows(engine) == rows
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert stored_rows(engine)[("*", "narrow", "1h", "all")]["forecasts"] == 48


def test_a_deleted_forecast_leaves_the_summary_at_the_next_refresh(
    engine: Engine, markets: dict[str, pd.DataFrame]
) -> None:
    ids = write_forecasts(engine, markets, range(80, 140, 3))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    before = stored_rows(engine)
    gone = ids[0]  # BTCUSDT's first forecast by "narrow"
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE id = :id"), {"id": gone})
    assert path_evaluations_frame(engine, gone).empty  # its grades went with it (trigger)
    assert stored_rows(engine) == before  # the summary waits for a refresh
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    after = stored_rows(engine)
    for scope in ("*", "BTCUSDT"):
        key = (scope, "narrow", "1h", "all")
        assert after[key]["forecasts"] == before[key]["forecasts"] - 1
        assert after[key]["questions"] == before[key]["questions"] - len(TOUCH_GRID)
    btc = ("BTCUSDT", "narrow", "1h", "all")
    assert after[btc]["first_as_of"] == before[btc]["first_as_of"] + 3 * H  # the next origin is the oldest now
    assert after[("ETHUSDT", "narrow", "1h", "all")] == before[("ETHUSDT", "narrow", "1h", "all")]
    btc_rows, btc_grades = path_performance(engine, symbol="BTCUSDT"), graded_touches(engine, symbol="BTCUSDT")
    for row, g in zip(btc_rows, btc_grades, strict=True):
        assert_summary_of(row, g)
    # every forecast of a model gone: its rows go too
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE model_name = 'wide'"))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert {key[1] for key in stored_rows(engine)} == {"narrow"}
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE ml_predictions"))
    run_scoring(Settings(), engine, "1h", as_of=START + HOURS * H)
    assert stored_rows(engine) == {}
