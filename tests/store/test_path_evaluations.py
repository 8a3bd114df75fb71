"""Reading graded touch questions (store.path_evaluations.graded_touches): groups, filters and the trailing window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store.path_evaluations import graded_touches, graded_touches_by_symbol

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def grade(engine: Engine, pid: int, symbol: str, model: str, days: int, p: float, touched: bool) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO path_evaluations (prediction_id, k, symbol, timeframe, model_name, as_of, horizon, level, "
                "side, p_touch, p_touch_rw, paths, touched, uses) VALUES (:pid, 1, :symbol, '1d', :model, :as_of, 5, "
                "101, 'above', :p, 0.3, 32, :touched, 'ohlc')"
            ),
            {
                "pid": pid,
                "symbol": symbol,
                "model": model,
                "as_of": T0 + timedelta(days=days),
                "p": p,
                "touched": touched,
            },
        )


def test_grades_are_grouped_by_model_filtered_and_windowed_per_symbol(engine: Engine) -> None:
    grade(engine, 1, "SPY", "garch", 0, 0.1, False)
    grade(engine, 2, "SPY", "garch", 40, 0.2, True)
    grade(engine, 3, "QQQ", "garch", 10, 0.3, False)  # QQQ's newest: its own 30 days count
    grade(engine, 4, "SPY", "baseline", 5, 0.4, True)
    groups = {(g.model_name, g.timeframe): g for g in graded_touches(engine)}
    assert set(groups) == {("baseline", "1d"), ("garch", "1d")}
    assert sorted(groups[("garch", "1d")].prediction_id.tolist()) == [1, 2, 3]
    (recent,) = graded_touches(engine, model_name="garch", window="trailing_30d")
    assert sorted(recent.prediction_id.tolist()) == [2, 3]
    (spy,) = graded_touches(engine, symbol="SPY", model_name="garch")
    order = np.argsort(spy.prediction_id)
    assert spy.p_touch[order].tolist() == [0.1, 0.2] and spy.touched[order].tolist() == [False, True]
    assert spy.uses == {"ohlc": 2} and set(spy.horizon) == {5} and set(spy.k) == {1}
    assert graded_touches(engine, model_name="kronos-small") == []


def test_grades_by_symbol_hold_every_subset_graded_touches_reads(engine: Engine) -> None:
    grade(engine, 1, "SPY", "garch", 0, 0.1, False)
    grade(engine, 2, "SPY", "garch", 40, 0.2, True)
    grade(engine, 3, "QQQ", "garch", 10, 0.3, False)
    grade(engine, 4, "QQQ", "garch", 45, 0.35, True)
    grade(engine, 5, "SPY", "baseline", 5, 0.4, True)
    with engine.connect() as conn, conn.begin():
        groups = {g.model_name: g for g in graded_touches_by_symbol(conn, "1d")}
        assert graded_touches_by_symbol(conn, "1h") == []
    assert set(groups) == {"baseline", "garch"}
    garch = groups["garch"]
    assert garch.symbols == ("QQQ", "SPY") and garch.symbol is not None and garch.recent is not None
    for symbol in (None, "QQQ", "SPY"):
        for window in ("all", "trailing_30d"):
            [live] = graded_touches(engine, symbol=symbol, model_name="garch", window=window)
            mask = np.ones(len(garch), dtype=bool) if symbol is None else garch.symbol == garch.symbols.index(symbol)
            part = garch.subset(mask & garch.recent if window == "trailing_30d" else mask)
            assert sorted(part.prediction_id.tolist()) == sorted(live.prediction_id.tolist())
            order, live_order = np.argsort(part.prediction_id), np.argsort(live.prediction_id)
            assert part.p_touch[order].tolist() == live.p_touch[live_order].tolist()
            assert part.as_of[order].tolist() == live.as_of[live_order].tolist()
    assert sorted(garch.subset(garch.recent).prediction_id.tolist()) == [2, 4]  # each symbol its own newest
