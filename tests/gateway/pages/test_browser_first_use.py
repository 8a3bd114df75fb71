"""What a person meets on first use of the pages, in a real browser at desktop and phone widths: labelled proxies,
units, realised candles after a replayed forecast, an anchored fan with labelled hover values, the horizon, hidden
weekend gaps, a volume pane, charts that keep their height, a toolbar clear of the legend, a table that says it
scrolls, candles and a reason where there is no forecast, and one rule for bad parameters. Also /docs and /redoc
rendering with every other host unreachable.

The store is the seeded replay plus QQQ (an index level standing in for an ETF, weekday candles with volume, a
daily forecast made ten candles before its last one) and AAPL (candles that end years before any forecast).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support
from tests.gateway.pages.helpers import (
    DESKTOP,
    PHONE,
    box,
    layout,
    new_tab,
    open_page,
    overlaps,
    traces,
    utc_strings,
)

from candlecast.store import create_engine_for
from candlecast.store.candles import candles_between, latest_candles
from candlecast.store.predictions import latest_prediction

pytestmark = pytest.mark.browser

QQQ_NAME = support.EXTRA_LABELS["QQQ"][0]
WINDOW = "the stored forecasts are as of 2024-02-16 → 2024-03-01"


@pytest.fixture(scope="module")
def extended_store(extended_url: str) -> Iterator[Engine]:
    engine = create_engine_for(extended_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tab(browser: Any, extended_gateway: Any) -> Iterator[Any]:
    tab = new_tab(browser, extended_gateway.url)
    yield tab
    tab.context.close()


def test_a_replayed_forecast_is_drawn_over_what_happened_next(
    tab: Any, extended_store: Engine, artifacts: Path
) -> None:
    open_page(tab, "/symbol/QQQ")
    chart = traces(tab, "fan")
    stored = latest_prediction(extended_store, "QQQ", "baseline", "1d")
    assert stored is not None
    before = latest_candles(extended_store, "QQQ", "1d", 120, stored.as_of)
    after = candles_between(extended_store, "QQQ", "1d", stored.target_ts[0], stored.target_ts[-1])
    assert len(after) == 10

    # the fan starts at the last close, on the last candle the forecast saw
    anchor = before["ts"].iloc[-1]
    for name in ("p10", "p50", "p90"):
        assert chart[name]["x"] == utc_strings([anchor, *stored.target_ts])
        assert chart[name]["y"] == support.rounded([stored.last_close, *getattr(stored, name)], stored.last_close)
        assert chart[name]["hovertemplate"] == f"{name} %{{y:.2f}} USD<extra></extra>"  # labelled, with the unit
    assert chart["candles"]["x"] == utc_strings(before["ts"])
    # the realised candles after as_of, over the fan
    assert chart["realised"]["x"] == utc_strings(after["ts"])
    assert chart["realised"]["close"] == support.rounded(after["close"], stored.last_close)
    # a volume pane under the candles
    volume = chart["volume"]
    assert volume["yaxis"] == "y2" and volume["y"] == [*before["volume"], *after["volume"]]

    drawn = layout(tab, "fan")
    assert drawn["yaxis"]["title"]["text"] == "QQQ (USD)"  # units on the axis
    breaks = drawn["xaxis"]["rangebreaks"][0]["values"]  # an equity: weekends are hidden, weekdays are not
    assert "2024-02-17T00:00:00" in breaks and "2024-02-18T00:00:00" in breaks
    assert "2024-02-16T00:00:00" not in breaks and "2024-02-19T00:00:00" not in breaks

    assert tab.inner_text("#label") == f"{QQQ_NAME} · prices in USD"
    status = tab.inner_text("#status")
    assert "Historical replay: this forecast was made as of 2024-02-16 00:00 UTC" in status
    assert "Horizon: 10 × 1d candles, to the one opening 2024-02-29." in status
    assert "Realised candles after as_of: 10 of 10" in status
    tab.click("#values-box summary")
    first_row = tab.eval_on_selector_all("#values tbody tr:first-child td", "tds => tds.map(td => td.textContent)")
    assert first_row[0] == "2024-02-16" and first_row[4] == f"{support.rounded(after['close'].iloc[0], 15000)[0]:.2f}"
    tab.screenshot(path=str(artifacts / "replay-desktop.png"), full_page=True)


def test_the_chart_keeps_its_height_through_resizes_and_stays_clear_of_the_table(tab: Any, artifacts: Path) -> None:
    open_page(tab, "/symbol/QQQ")
    height = box(tab, "#fan")["height"]
    assert height == 500
    for viewport in ({"width": 900, "height": 600}, {"width": 1500, "height": 1000}, DESKTOP):
        tab.set_viewport_size(viewport)
        tab.wait_for_timeout(400)  # Plotly's resize handler and ours are debounced
        fan, below = box(tab, "#fan"), box(tab, "#values-box")
        assert fan["height"] == height, viewport
        assert fan["y"] + fan["height"] <= below["y"], viewport
        svg = box(tab, "#fan .main-svg")
        assert svg["height"] == height and svg["width"] <= fan["width"], viewport
    tab.set_viewport_size(PHONE)
    tab.wait_for_timeout(400)
    fan, below = box(tab, "#fan"), box(tab, "#values-box")
    assert fan["height"] == 460 and fan["y"] + fan["height"] <= below["y"]
    tab.screenshot(path=str(artifacts / "replay-after-resizes-phone.png"), full_page=True)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_plotly_toolbar_never_covers_the_legend(browser: Any, extended_gateway: Any, viewport: Any) -> None:
    tab = new_tab(browser, extended_gateway.url, viewport)
    for path, chart in (("/symbol/QQQ", "fan"), ("/evaluation", "coverage"), ("/evaluation", "calibration")):
        open_page(tab, path)
        tab.hover(f"#{chart} .nsewdrag")  # the toolbar shows while the pointer is over the chart
        toolbar, legend = box(tab, f"#{chart} .modebar"), box(tab, f"#{chart} .legend")
        assert toolbar["width"] > 0 and legend["width"] > 0
        assert not overlaps(toolbar, legend), (path, chart, toolbar, legend)
        assert tab.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    tab.context.close()


def test_the_scores_table_scrolls_sideways_on_a_phone_and_says_so(browser: Any, extended_gateway: Any) -> None:
    desktop = new_tab(browser, extended_gateway.url, DESKTOP)
    open_page(desktop, "/evaluation")
    assert desktop.is_hidden("#scores-cue")  # everything fits: no cue
    assert desktop.inner_text("#scores tbody tr:first-child .sub")  # the instrument's label under its symbol
    desktop.context.close()

    phone = new_tab(browser, extended_gateway.url, PHONE)
    open_page(phone, "/evaluation")
    wrap = phone.evaluate(
        "() => { const w = document.getElementById('scores-wrap'); return [w.scrollWidth, w.clientWidth]; }"
    )
    assert wrap[0] > wrap[1]  # the table is wider than the screen...
    assert phone.is_visible("#scores-cue") and "scroll the table sideways" in phone.inner_text("#scores-cue")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # ...and only it scrolls
    phone.evaluate("document.getElementById('scores-wrap').scrollLeft = 10000")
    assert phone.evaluate("document.getElementById('scores-wrap').scrollLeft") > 0
    phone.context.close()


def test_a_symbol_without_a_forecast_shows_its_candles_and_why(
    tab: Any, extended_store: Engine, artifacts: Path
) -> None:
    open_page(tab, "/symbol/AAPL")
    chart = traces(tab, "fan")
    assert set(chart) == {"candles", "volume"}
    candles = latest_candles(extended_store, "AAPL", "1d", 120, support.AS_OF)
    assert chart["candles"]["x"] == utc_strings(candles["ts"]) and len(candles) > 100
    assert layout(tab, "fan")["xaxis"]["rangebreaks"][0]["values"][0] == "2012-10-06T00:00:00"  # a Saturday
    assert tab.inner_text("#status") == (
        f"No 1d forecast of AAPL: its 1d candles end 2013-03-01, before any forecast was made ({WINDOW}). "
        f"Its 1d candles run 2012-10-01 → 2013-03-01 (the newest {len(candles)} are drawn)."
    )
    assert tab.is_hidden("#values-box")
    tab.screenshot(path=str(artifacts / "no-forecast-desktop.png"), full_page=True)


def test_home_cards_show_the_label_last_price_and_change_or_why_there_is_no_forecast(
    tab: Any, extended_store: Engine, artifacts: Path
) -> None:
    open_page(tab, "/")
    card = "#cards .card[data-symbol='{}']"
    assert tab.inner_text(card.format("SPY") + " .card-name") == support.LABELS["SPY"][0]
    stored = latest_prediction(extended_store, "QQQ", "baseline", "1d")
    assert stored is not None
    last_two = latest_candles(extended_store, "QQQ", "1d", 2, stored.as_of)["close"]
    previous, last = support.rounded(last_two, stored.last_close)
    change = round(last - previous, 2)
    sign = "+" if change > 0 else ""
    assert tab.inner_text(card.format("QQQ") + " .card-price") == (
        f"{last:.2f} USD {sign}{change:.2f} ({sign}{(last - previous) / previous * 100:.2f}%)"
    )
    assert tab.inner_text(card.format("AAPL") + " .no-forecast") == (
        f"No 1d forecast: its 1d candles end 2013-03-01, before any forecast was made ({WINDOW})."
    )
    aapl_last = latest_candles(extended_store, "AAPL", "1d", 1, support.AS_OF)["close"].iloc[-1]
    assert tab.inner_text(card.format("AAPL") + " .price") == f"{aapl_last:.3f} USD"  # 440.xyz: six digits
    tab.screenshot(path=str(artifacts / "home-first-use-desktop.png"), full_page=True)

    open_page(tab, "/?timeframe=1h")
    assert tab.inner_text(card.format("QQQ") + " .no-forecast") == "No 1h forecast: no 1h candles are stored."


def test_bad_parameters_say_what_was_asked_and_show_what_exists(tab: Any, extended_store: Engine) -> None:
    open_page(tab, "/symbol/QQQ?model_name=kronos-small&timeframe=1h")
    assert tab.inner_text("#notice") == (
        "You asked for model 'kronos-small', timeframe '1h'; QQQ has baseline 1d. Showing baseline 1d."
    )
    stored = latest_prediction(extended_store, "QQQ", "baseline", "1d")
    assert stored is not None
    assert traces(tab, "fan")["p50"]["y"][1:] == support.rounded(stored.p50, stored.last_close)
    assert "model_name=baseline&timeframe=1d" in tab.url  # the address now says what is shown

    open_page(tab, "/?timeframe=4h")
    assert tab.inner_text("#notice") == "You asked for timeframe '4h'; there are 1h and 1d. Showing 1d."
    assert tab.eval_on_selector_all(".spark:not(.empty)", "s => s.length") == 4

    open_page(tab, "/symbol/NOPE", status=404)
    assert tab.inner_text("#available") == "What there is: AAPL, BTCUSDT, EURUSD, QQQ, SPY"
    tab.click("#available a[href='/symbol/QQQ']")
    tab.wait_for_selector("body[data-ready='1']")
    assert tab.inner_text("h1") == "QQQ"


def test_docs_and_redoc_render_with_every_other_host_unreachable(browser: Any, gateway: Any) -> None:
    tab = new_tab(browser, gateway.url, offline=True)
    tab.goto(gateway.url + "/docs")
    tab.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "candlecast gateway" in tab.inner_text(".swagger-ui .info .title")
    tab.wait_for_selector(".opblock-tag-section", timeout=20_000)
    assert "/api/v1/predictions/{symbol}" in tab.inner_text(".swagger-ui")
    tab.goto(gateway.url + "/redoc")
    tab.wait_for_selector("h1", timeout=20_000)
    tab.wait_for_function("document.querySelector('h1').textContent.includes('candlecast gateway')", timeout=20_000)
    assert tab.outside == []  # nothing was even asked of another host
    assert tab.errors == []
    tab.context.close()
