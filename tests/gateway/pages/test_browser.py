"""The web pages in a real browser: they load without console errors, their charts hold exactly the values
stored in the database, the toggles switch the chart, and they fit a phone-width screen.

Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support
from tests.gateway.pages.helpers import PHONE, new_tab, open_page, traces, utc_strings

from candlecast.store.candles import latest_candles
from candlecast.store.performance import calibration, performance
from candlecast.store.predictions import latest_prediction

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, gateway: Any) -> Iterator[Any]:
    """A browser tab on the gateway that collects console errors and failed requests."""
    tab = new_tab(browser, gateway.url)
    yield tab
    tab.context.close()


def assert_fan_matches(
    trace_by_meta: dict[str, dict[str, Any]], store: Engine, symbol: str, model: str, tf: str
) -> None:
    """The fan holds the stored quantiles (rounded as served), anchored at the last close: it starts at the last
    candle the forecast saw."""
    stored = latest_prediction(store, symbol, model, tf)
    assert stored is not None
    anchor = latest_candles(store, symbol, tf, 1, stored.as_of)["ts"].iloc[-1]
    for name in ("p10", "p50", "p90"):
        trace = trace_by_meta[name]
        assert trace["x"] == utc_strings([anchor, *stored.target_ts])
        assert trace["y"] == support.rounded([stored.last_close, *getattr(stored, name)], stored.last_close)


def test_home_grid_draws_each_stored_forecast(page: Any, store: Engine, artifacts: Path) -> None:
    open_page(page, "/?timeframe=1h")  # the grid opens on 1d (settings.gateway.home_timeframe)
    symbols = page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.symbol)")
    assert sorted(symbols) == ["BTCUSDT", "EURUSD", "SPY"]
    for symbol in symbols:
        assert_fan_matches(traces(page, f"spark-{symbol}"), store, symbol, "baseline", "1h")
    assert "Historical replay" in page.inner_text("#replay-note")
    assert "generated" in page.inner_text(".card .freshness")
    page.screenshot(path=str(artifacts / "home-desktop.png"), full_page=True)

    page.set_viewport_size(PHONE)
    open_page(page, "/?timeframe=1d")
    assert_fan_matches(traces(page, "spark-SPY"), store, "SPY", "baseline", "1d")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts / "home-phone.png"), full_page=True)


def test_symbol_page_shows_candles_band_and_median_and_the_toggles_switch_them(
    page: Any, store: Engine, artifacts: Path
) -> None:
    open_page(page, "/symbol/BTCUSDT")
    chart = traces(page, "fan")
    assert_fan_matches(chart, store, "BTCUSDT", "baseline", "1h")
    stored = latest_prediction(store, "BTCUSDT", "baseline", "1h")
    assert stored is not None
    history = latest_candles(store, "BTCUSDT", "1h", 120, stored.as_of)
    assert chart["candles"]["close"] == support.rounded(history["close"], stored.last_close)
    np.testing.assert_allclose(chart["candles"]["open"], history["open"], rtol=1e-5)
    status = page.inner_text("#status")
    assert "Historical replay" in status and "2024-03-01 12:00 UTC" in status and "generated" in status
    page.screenshot(path=str(artifacts / "symbol-desktop.png"), full_page=True)

    page.click("#model-toggle button[data-model='kronos-small']")
    assert_fan_matches(traces(page, "fan"), store, "BTCUSDT", "kronos-small", "1h")
    assert page.get_attribute("#timeframe-toggle button[data-timeframe='1d']", "disabled") is not None

    page.click("#model-toggle button[data-model='baseline']")
    page.click("#timeframe-toggle button[data-timeframe='1d']")
    assert_fan_matches(traces(page, "fan"), store, "BTCUSDT", "baseline", "1d")
    assert "timeframe=1d" in page.url  # the selection is shareable
    assert page.errors == []

    page.set_viewport_size(PHONE)
    open_page(page, "/symbol/SPY?model_name=kronos-small&timeframe=1h")
    assert_fan_matches(traces(page, "fan"), store, "SPY", "kronos-small", "1h")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=str(artifacts / "symbol-phone.png"), full_page=True)


def test_evaluation_page_charts_coverage_and_calibration_from_the_scores(
    page: Any, store: Engine, artifacts: Path
) -> None:
    open_page(page, "/evaluation")
    rows = performance(store, window="all")
    assert rows
    coverage = traces(page, "coverage")
    for row in rows:
        trace = coverage[f"coverage:{row.model_name} {row.timeframe}"]
        assert trace["y"][trace["x"].index(row.symbol)] == pytest.approx(row.coverage, rel=1e-12)
    drawn = traces(page, "calibration")
    for c in calibration(store):
        trace = drawn[f"calibration:{c.model_name} {c.timeframe}"]
        assert trace["x"] == [0.1, 0.5, 0.9]
        assert trace["y"] == pytest.approx([c.below_p10, c.below_p50, c.below_p90], rel=1e-12)
    table_rows = page.eval_on_selector_all("#scores tbody tr", "rs => rs.length")
    assert table_rows == len(rows)
    page.screenshot(path=str(artifacts / "evaluation-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    open_page(page, "/evaluation")
    page.screenshot(path=str(artifacts / "evaluation-phone.png"), full_page=True)
