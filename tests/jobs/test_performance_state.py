"""The incremental performance refresh equals a full recomputation: mergeable summaries (pure), the coverage's
Newey–West interval, then the refresh over months of scores, with folded months, a stale group, a longer horizon, a
rewritten old forecast and summaries of an older layout."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from scipy.stats import t as student_t
from sqlalchemy.engine import Engine

from candlecast.config import Settings
from candlecast.jobs.performance_state import (
    OutdatedState,
    Series,
    all_steps_summary,
    dump_state,
    load_state,
    row_values,
    step_summary,
)
from candlecast.jobs.scoring import performance_rows, refresh_performance, run_scoring
from candlecast.scores import diebold_mariano, newey_west_variance
from candlecast.store.performance import performance, read_performance_summaries, scored_steps
from candlecast.store.predictions import Prediction, upsert_predictions

from .conftest import load_market

D = timedelta(days=1)
START = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("lag", [0, 1, 4, 9])
def test_series_merged_piece_by_piece_gives_the_same_diebold_mariano(lag: int) -> None:
    rng = np.random.default_rng(lag)
    x = rng.normal(0.3, 1.0, 200)
    for cuts in ([], [100], [1, 2, 3, 50, 51, 197], list(range(5, 200, 7))):
        pieces = np.split(x, cuts)
        merged = Series.of(pieces[0], lag)
        for piece in pieces[1:]:
            merged = merged.then(Series.of(piece, lag))
        for used in range(lag + 1):
            assert merged.diebold_mariano(used) == pytest.approx(diebold_mariano(x, used), rel=1e-9)
    assert math.isnan(Series.of(x[:1], lag).diebold_mariano(lag)[0])


def _part(in_band: np.ndarray, h: int = 1, as_of: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scored steps of step ``h`` in origin order with the given in-band indicator (the rest arbitrary)."""
    n = len(in_band)
    rng = np.random.default_rng(n)
    return {
        "step": np.full(n, h, dtype=np.int32), "as_of": np.arange(n) * 10 if as_of is None else as_of,
        "direction_hit": rng.random(n) > 0.5, "in_band": np.asarray(in_band, dtype=bool),
        "in_band_raw": rng.random(n) > 0.3, "crps": rng.random(n), "crps_rw": rng.random(n),
        "crps_relative": rng.random(n), "pinball": rng.random(n), "strategy_return": rng.normal(0, 0.01, n),
    }  # fmt: skip


def _interval(summary: object, lag: int) -> tuple[float, float, float]:
    row = row_values(summary, 252, lag, lambda raw: raw)  # type: ignore[arg-type]
    return row["coverage"], row["coverage_low"], row["coverage_high"]


@pytest.mark.parametrize("lag", [0, 3, 9])
def test_the_coverage_interval_is_the_newey_west_interval_of_the_in_band_series(lag: int) -> None:
    rng = np.random.default_rng(lag + 10)
    x = rng.random(300) < 0.75  # a known series: each step in the band or not, in origin order
    pieces = np.split(x, [40, 41, 170])
    merged = Series.of(pieces[0], lag)
    for piece in pieces[1:]:
        merged = merged.then(Series.of(piece, lag))
    direct = newey_west_variance(x.astype(float), lag)
    assert merged.long_run_variance(lag) == pytest.approx(direct, rel=1e-9)
    assert merged.mean_variance(lag) == pytest.approx(direct / len(x), rel=1e-9)
    # the step-(lag + 1) row of those steps: coverage +- t sqrt(V / n), t with n / (lag + 1) - 1 degrees of freedom
    coverage, low, high = _interval(step_summary(_part(x, h=lag + 1), lag + 1), lag)
    half = student_t.ppf(0.95, len(x) / (lag + 1) - 1) * math.sqrt(direct / len(x))
    assert coverage == pytest.approx(x.mean(), rel=1e-12)
    assert (low, high) == (pytest.approx(x.mean() - half, rel=1e-9), pytest.approx(x.mean() + half, rel=1e-9))
    # fewer than 2 values, or one horizon or less: no interval
    assert math.isnan(Series.of(x[:1], lag).mean_variance(lag))
    assert all(math.isnan(v) for v in _interval(step_summary(_part(x[:1], h=lag + 1), lag + 1), lag)[1:])
    short = x[: lag + 1]
    assert all(math.isnan(v) for v in _interval(step_summary(_part(short, h=lag + 1), lag + 1), lag)[1:])


def test_the_coverage_interval_widens_with_dependence_and_stays_in_zero_one() -> None:
    rng = np.random.default_rng(3)
    runs = np.repeat(rng.random(30) < 0.8, 10)  # runs of 10 equal values, as 10-step forecasts sharing outcomes
    summary = step_summary(_part(runs, h=10), 10)
    coverage, low0, high0 = _interval(summary, 0)
    _, low9, high9 = _interval(summary, 9)
    assert low9 < low0 <= coverage <= high0 < high9
    # 30 independent windows, not 300 steps: sqrt(10) times wider in truth; the Bartlett weights of 9 lags give
    # about sqrt(1 + 2 sum_k (1 - k / 10)^2) = 2.6 of it
    assert (high9 - low9) > 2 * (high0 - low0)
    independent = rng.permutation(runs)  # the same values without the runs: the lags change little
    _, low_i, high_i = _interval(step_summary(_part(independent, h=10), 10), 9)
    assert (high_i - low_i) < 1.5 * (high0 - low0)
    # nearly always in the band: the interval is clipped at 1
    mostly = np.r_[np.ones(60, dtype=bool), np.zeros(2, dtype=bool)]
    coverage, low, high = _interval(step_summary(_part(mostly, h=5), 5), 4)
    assert high == 1.0 and 0 < low < coverage < 1


def test_the_all_steps_interval_is_that_of_each_forecasts_share_of_its_steps_in_the_band() -> None:
    rng = np.random.default_rng(5)
    horizon, forecasts = 4, 80
    in_band = rng.random((forecasts, horizon)) < 0.8
    in_band[-1, 2:] = False  # whatever: the share per forecast is what counts
    as_of = np.repeat(np.arange(forecasts) * 10, horizon)
    part = {**_part(in_band.ravel(), as_of=as_of), "step": np.tile(np.arange(1, horizon + 1), forecasts)}
    share = in_band.mean(axis=1)
    coverage, low, high = _interval(all_steps_summary(part, horizon - 1), horizon - 1)
    t90 = student_t.ppf(0.95, forecasts / horizon - 1)  # 20 horizons: 19 degrees of freedom
    half = t90 * math.sqrt(newey_west_variance(share, horizon - 1) / forecasts)
    assert coverage == pytest.approx(in_band.mean(), rel=1e-12)
    assert (low, high) == (pytest.approx(coverage - half, rel=1e-9), pytest.approx(coverage + half, rel=1e-9))


def test_a_state_of_an_older_layout_is_refused() -> None:
    with pytest.raises(OutdatedState, match="layout 1, not 2"):
        load_state(_old_layout())


def test_summaries_survive_serialisation() -> None:
    rng = np.random.default_rng(1)
    n = 40
    part = {
        "step": np.repeat([1, 2], n // 2).astype(np.int32), "as_of": np.tile(np.arange(n // 2) * 10, 2),
        "direction_hit": rng.random(n) > 0.5, "in_band": rng.random(n) > 0.2, "in_band_raw": rng.random(n) > 0.3,
        "crps": rng.random(n), "crps_rw": np.where(rng.random(n) > 0.1, rng.random(n), np.nan),
        "crps_relative": rng.random(n), "pinball": rng.random(n), "strategy_return": rng.normal(0, 0.01, n),
    }  # fmt: skip
    summaries = {0: all_steps_summary(part, 1), 1: step_summary({k: v[: n // 2] for k, v in part.items()}, 1)}
    back = load_state(dump_state(summaries))
    assert set(back) == set(summaries)
    for key, s in summaries.items():
        b = back[key]
        assert (b.n_steps, b.hits, b.first, b.last, b.max_step) == (s.n_steps, s.hits, s.first, s.last, s.max_step)
        assert b.returns_m2 == s.returns_m2 and b.d.n == s.d.n and np.array_equal(b.d.cross, s.d.cross)
        assert (b.band.lag, b.band.n, b.band.total) == (s.band.lag, s.band.n, s.band.total)
        for name in ("cross", "head", "tail"):
            assert np.array_equal(getattr(b.band, name), getattr(s.band, name)), name


def _forecasts(market: dict, symbol: str, model: str, days: range, pred_len: int) -> list[Prediction]:
    frame = market[symbol]
    out = []
    for k in days:
        as_of = START + k * D
        close = float(frame.close.iloc[k - 1])
        rng = np.random.default_rng(k * 7 + pred_len)
        paths = (close * np.exp(np.cumsum(rng.normal(0, 0.02, (16, pred_len)), axis=1))).astype(np.float32)
        q = np.quantile(paths, [0.1, 0.5, 0.9], axis=0)
        out.append(Prediction(
            symbol=symbol, timeframe="1d", model_name=model, as_of=as_of,
            target_ts=[as_of + h * D for h in range(pred_len)], p10=q[0], p50=q[1], p90=q[2], last_close=close,
            samples=paths,
        ))  # fmt: skip
    return out


def _full(engine: Engine) -> dict[tuple, dict]:
    with engine.connect() as bound:
        conn = bound.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            rows = performance_rows(scored_steps(conn, "1d"), "1d")
    return {(r["symbol"], r["model_name"], r["window_name"], r["step"]): r for r in rows}


def _assert_same(engine: Engine) -> None:
    expected = _full(engine)
    stored = {(r.symbol, r.model_name, r.window_name, r.step): r for r in performance(engine, window=None, step=None)}
    assert set(stored) == set(expected)
    for key, row in stored.items():
        for name, want in expected[key].items():
            if name in ("symbol", "model_name", "window_name", "step"):
                continue
            got = getattr(row, name)
            if isinstance(want, float) and math.isnan(want):
                assert got is None, (key, name)
            elif isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (key, name)
            else:
                assert got == want, (key, name)
    # the coverage's interval is among them, and holds the coverage
    assert all({"coverage_low", "coverage_high"} <= set(row) for row in expected.values())
    bounds = [(r.coverage_low, r.coverage, r.coverage_high) for r in stored.values() if r.n_predictions >= 2]
    assert bounds and all(0 <= low <= c <= high <= 1 for low, c, high in bounds)
    assert any(high - low > 0.01 for low, _, high in bounds)


def _old_layout() -> bytes:
    """A state as ``dump_state`` wrote it before the in-band series (no version, one series)."""
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.zeros(1, dtype=np.int64), scalars=np.zeros((1, 19)), series=np.zeros((1, 3)))
    return buffer.getvalue()


def test_incremental_refresh_equals_full_recompute_as_history_grows(engine: Engine) -> None:
    market = load_market(engine, ["BTCUSDT", "ETHUSDT"], START - 80 * D, 80 + 200, timeframe="1d")
    market = {s: f[f.ts >= START].reset_index(drop=True) for s, f in market.items()}  # index k = day k
    # 'walk' on both symbols (5 steps, later 7), 'stale' on ETH stops after two months
    batches = [
        (range(1, 40), [("BTCUSDT", "walk", 5), ("ETHUSDT", "walk", 5), ("ETHUSDT", "stale", 3)]),
        (range(40, 70), [("BTCUSDT", "walk", 5), ("ETHUSDT", "walk", 5), ("ETHUSDT", "stale", 3)]),
        (range(70, 110), [("BTCUSDT", "walk", 5), ("ETHUSDT", "walk", 5)]),
        (range(110, 150), [("BTCUSDT", "walk", 5), ("ETHUSDT", "walk", 5)]),
        (range(150, 175), [("BTCUSDT", "walk", 7), ("ETHUSDT", "walk", 5)]),  # a longer horizon: rebuilt
    ]
    boundaries = []
    for days, series in batches:
        with engine.begin() as conn:
            for symbol, model, pred_len in series:
                upsert_predictions(conn, _forecasts(market, symbol, model, days, pred_len))
        run_scoring(Settings(), engine, "1d", as_of=START + (days.stop + 1) * D, refresh=False, record=False)
        refresh_performance(engine, "1d")
        _assert_same(engine)
        with engine.connect() as conn:
            state = read_performance_summaries(conn, "1d")
        boundaries.append(state[("BTCUSDT", "walk")][0] if ("BTCUSDT", "walk") in state else None)
        assert all(through.day == 1 for through, _ in state.values())
    # the boundary moved forward by whole months, so later refreshes read only recent partitions
    assert boundaries[-2] is not None and boundaries[-2] >= datetime(2023, 4, 1, tzinfo=UTC)
    with engine.connect() as conn:  # the stale series stopped early: its boundary stayed behind
        state = read_performance_summaries(conn, "1d")
    assert state[("ETHUSDT", "stale")][0] < boundaries[-1]

    # an old forecast rewritten (its scores deleted, then scored afresh) is noticed: a rebuild, still equal
    with engine.begin() as conn:
        (old,) = _forecasts(market, "BTCUSDT", "walk", range(3, 4), 5)
        old.p50 = old.p50 * 1.05
        upsert_predictions(conn, [old])
    refresh_performance(engine, "1d")
    _assert_same(engine)
    run_scoring(Settings(), engine, "1d", as_of=START + 176 * D, refresh=False, record=False)
    refresh_performance(engine, "1d")
    _assert_same(engine)

    # scores deleted behind the store's back are logged by the trigger too
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM signal_evaluations WHERE as_of < :t AND step = 2"), {"t": START + 20 * D})
    refresh_performance(engine, "1d")
    _assert_same(engine)
    # and a full recomputation on request gives the same rows
    refresh_performance(engine, "1d", full=True)
    _assert_same(engine)


def _snapshot(engine: Engine) -> tuple[dict[tuple, tuple], dict[tuple[str, str], tuple]]:
    """Every signal_performance row with its system columns (ctid, xmin: a rewritten row changes them), and every
    stored summary row with its xmin."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT symbol, model_name, window_name, step, ctid::text, xmin::text, refreshed_at "
            "FROM signal_performance WHERE timeframe = '1d'"
        )).all()  # fmt: skip
        summaries = conn.execute(
            sa.text("SELECT symbol, model_name, xmin::text, through FROM performance_summaries WHERE timeframe = '1d'")
        ).all()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}, {(r[0], r[1]): tuple(r[2:]) for r in summaries}


def test_a_refresh_rewrites_only_the_series_whose_scores_changed(engine: Engine) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    market = load_market(engine, symbols, START - 80 * D, 80 + 140, timeframe="1d")
    market = {s: f[f.ts >= START].reset_index(drop=True) for s, f in market.items()}
    everyone = [(symbol, model) for symbol in symbols for model in ("walk", "drift")]
    with engine.begin() as conn:
        for symbol, model in everyone:
            upsert_predictions(conn, _forecasts(market, symbol, model, range(1, 100), 4 if model == "walk" else 3))
    run_scoring(Settings(), engine, "1d", as_of=START + 100 * D)  # scores and refreshes
    _assert_same(engine)
    # every series gains scores, with one boundary for all (read in one scan from it)
    with engine.connect() as conn:
        assert len({through for through, _ in read_performance_summaries(conn, "1d").values()}) == 1
    run_scoring(Settings(), engine, "1d", as_of=START + 110 * D)  # scores every step, refreshes
    _assert_same(engine)
    rows_before, summaries_before = _snapshot(engine)
    assert {k[:2] for k in rows_before} == set(everyone) == set(summaries_before)

    # one series gains forecasts and scores, past a month boundary (its summaries fold a month)
    with engine.begin() as conn:
        upsert_predictions(conn, _forecasts(market, "ETHUSDT", "walk", range(100, 130), 4))
    run_scoring(Settings(), engine, "1d", as_of=START + 135 * D)
    _assert_same(engine)
    rows_after, summaries_after = _snapshot(engine)
    assert set(rows_after) >= set(rows_before)
    for key, before in rows_before.items():
        if key[:2] == ("ETHUSDT", "walk"):
            assert rows_after[key] != before, key  # rewritten
        else:
            assert rows_after[key] == before, key  # the very same tuple: untouched
    for pair, before in summaries_before.items():
        if pair == ("ETHUSDT", "walk"):
            assert summaries_after[pair][1] > before[1]  # its boundary moved on
        else:
            assert summaries_after[pair] == before, pair
    # every row says how far scoring had reached, the untouched ones included
    assert {r.refreshed_from for r in performance(engine, window=None, step=None)} == {START + 135 * D}

    # nothing new: nothing rewritten
    refresh_performance(engine, "1d")
    assert _snapshot(engine) == (rows_after, summaries_after)
    _assert_same(engine)

    # a series whose scores all go (its forecasts deleted) loses its rows and its summaries; the others stay
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE symbol = 'SOLUSDT' AND model_name = 'drift'"))
    refresh_performance(engine, "1d")
    _assert_same(engine)
    rows_last, summaries_last = _snapshot(engine)
    assert ("SOLUSDT", "drift") not in summaries_last and all(k[:2] != ("SOLUSDT", "drift") for k in rows_last)
    assert all(rows_last[k] == v for k, v in rows_after.items() if k[:2] != ("SOLUSDT", "drift"))


def test_summaries_of_an_older_layout_are_recomputed_from_all_scores(engine: Engine) -> None:
    market = load_market(engine, ["BTCUSDT"], START - 80 * D, 80 + 120, timeframe="1d")
    market = {s: f[f.ts >= START].reset_index(drop=True) for s, f in market.items()}
    with engine.begin() as conn:
        upsert_predictions(conn, _forecasts(market, "BTCUSDT", "walk", range(1, 80), 4))
    run_scoring(Settings(), engine, "1d", as_of=START + 84 * D)
    with engine.begin() as conn:  # the summaries as an older release stored them
        assert conn.execute(sa.text("UPDATE performance_summaries SET state = :s"), {"s": _old_layout()}).rowcount
    with engine.begin() as conn:
        upsert_predictions(conn, _forecasts(market, "BTCUSDT", "walk", range(80, 100), 4))
    run_scoring(Settings(), engine, "1d", as_of=START + 104 * D)  # an incremental refresh: the series is rebuilt
    _assert_same(engine)
    with engine.connect() as conn:
        [(through, state)] = read_performance_summaries(conn, "1d").values()
    summaries = load_state(state)  # rewritten in the current layout
    assert through > START and summaries[0].band.n == summaries[0].n_predictions > 0
