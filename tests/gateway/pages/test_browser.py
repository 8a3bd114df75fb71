"""The web pages in a real browser: they load without console errors, their charts hold exactly the values
stored in the database, the toggles switch the chart, and they fit a phone-width screen.

Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from candlecast.store.candles import latest_candles
from candlecast.store.performance import calibration, performance
from candlecast.store.predictions import latest_prediction

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def page(browser: Any, gateway: Any) -> Iterator[Any]:
    """A browser tab on the gateway that collects console errors and failed requests."""
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.errors = []
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("requestfailed", lambda req: tab.errors.append(f"{req.url}: {req.failure}"))
    tab.base = gateway.url
    yield tab
    context.close()


def open_page(tab: Any, path: str) -> None:
    response = tab.goto(tab.base + path)
    assert response is not None and response.status == 200
    tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert tab.errors == []


def traces(tab: Any, element_id: str) -> dict[str, dict[str, Any]]:
    """The Plotly traces drawn in an element, by their ``meta`` name."""
    data = tab.evaluate(f"() => document.getElementById({element_id!r}).data")
    return {trace["meta"]: trace for trace in data}


def utc_strings(timestamps: Any) -> list[str]:
    """How the page hands timestamps to Plotly: ISO in UTC without the zone suffix."""
    return [datetime.fromisoformat(str(ts)).strftime("%Y-%m-%dT%H:%M:%S") for ts in timestamps]


def assert_fan_matches(
    trace_by_meta: dict[str, dict[str, Any]], store: Engine, symbol: str, model: str, tf: str
) -> None:
    stored = latest_prediction(store, symbol, model, tf)
    assert stored is not None
    for name in ("p10", "p50", "p90"):
        np.testing.assert_allclose(trace_by_meta[name]["y"], getattr(stored, name), rtol=1e-12)
        assert trace_by_meta[name]["x"] == utc_strings(stored.target_ts)


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
    np.testing.assert_allclose(chart["candles"]["close"], history["close"], rtol=1e-12)
    np.testing.assert_allclose(chart["candles"]["open"], history["open"], rtol=1e-12)
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
