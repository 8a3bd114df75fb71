"""The pages over plain HTTP: error pages, embedded data, and the Plotly bundle served from the plotly package."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import plotly


def embedded_data(html: str) -> Any:
    match = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S)
    assert match is not None
    return json.loads(match.group(1))


def test_symbol_page_embeds_the_same_forecast_the_showcase_serves(gateway: Any) -> None:
    page = gateway.get("/symbol/BTCUSDT")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    data = embedded_data(page.text)
    showcase = gateway.get("/showcase/ml-prediction/BTCUSDT", params={"model_name": "kronos-small"}).json()
    series = data["series"]["kronos-small|1h"]
    page_level = {"name", "quote_currency", "data_mode", "data_as_of", "stale"}  # said once for the page
    assert {k: series[k] for k in showcase if k not in page_level} == {
        k: v for k, v in showcase.items() if k not in page_level
    }
    assert {k: data[k] for k in page_level - {"data_as_of"}} == {k: showcase[k] for k in page_level - {"data_as_of"}}
    assert data["models"] == ["baseline", "kronos-small"] and data["timeframes"] == ["1h", "1d"]
    assert data["default"] == "baseline|1h"


def test_unknown_and_malformed_symbols_get_error_pages_listing_the_instruments(gateway: Any) -> None:
    for path, status, says in [
        ("/symbol/NOPE", 404, "unknown symbol &#39;NOPE&#39;"),
        ("/symbol/bad$symbol", 422, "symbol: malformed symbol"),
    ]:
        page = gateway.get(path)
        assert page.status_code == status and says in page.text
        links = re.findall(r'<a href="/symbol/([A-Z]+)">', page.text)
        assert links == ["BTCUSDT", "EURUSD", "SPY"], path


def test_bad_page_parameters_say_what_was_asked_and_what_exists_and_show_it(gateway: Any) -> None:
    def notice(html: str) -> str:
        match = re.search(r'<p class="banner notice" id="notice" role="status">(.*?)</p>', html, re.S)
        assert match is not None
        return match.group(1)

    home = gateway.get("/?timeframe=4h")
    assert home.status_code == 200 and embedded_data(home.text)["timeframe"] == "1d"
    assert notice(home.text) == "You asked for timeframe &#39;4h&#39;; there are 1h and 1d. Showing 1d."

    evaluation = gateway.get("/evaluation?window=never")
    assert evaluation.status_code == 200 and embedded_data(evaluation.text)["window"] == "all"
    assert "window &#39;never&#39;; there are all and trailing_30d. Showing all." in notice(evaluation.text)

    symbol = gateway.get("/symbol/SPY?model_name=chronos2&timeframe=5m")
    assert symbol.status_code == 200
    assert notice(symbol.text) == (
        "You asked for model &#39;chronos2&#39;, timeframe &#39;5m&#39;; SPY has baseline 1h, baseline 1d, "
        "kronos-small 1h. Showing baseline 1h."
    )
    config = json.loads(re.search(r'id="page-config" type="application/json">(.*?)</script>', symbol.text).group(1))
    assert config["selected"] == {"model": "baseline", "timeframe": "1h"}

    partly = gateway.get("/symbol/SPY?model_name=kronos-small&timeframe=1d")  # both exist, not together
    assert "Showing kronos-small 1h." in notice(partly.text)
    assert 'id="notice"' not in gateway.get("/symbol/SPY?model_name=kronos-small&timeframe=1h").text
    assert 'id="notice"' not in gateway.get("/").text


def test_plotly_is_served_from_the_python_package_gzipped_and_immutable(gateway: Any) -> None:
    page = gateway.get("/").text
    src = re.search(r'src="(/static/plotly\.min\.js\?v=[0-9a-f]+)"', page)
    assert src is not None
    response = gateway.get(src.group(1), headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "immutable" in response.headers["cache-control"]
    bundled = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert response.content == bundled  # httpx decoded the gzip body
    assert len(gzip.compress(bundled)) < len(bundled) / 2
    assert gateway.get("/static/nothing.js").status_code == 404


def test_the_evaluation_page_embeds_and_tabulates_the_stored_touch_scores(tracked_gateway: Any) -> None:
    """The page's touch section comes from the same answer as ``/api/v1/performance`` (``path_performance``)."""
    for window in ("all", "trailing_30d"):
        page = tracked_gateway.get(f"/evaluation?window={window}")
        api = tracked_gateway.get(
            "/api/v1/performance", params={"window": window}, headers={"X-API-Key": "test-key-1"}
        ).json()
        assert page.status_code == 200 and embedded_data(page.text)["path_scores"] == api["path_scores"] != []
        rows = re.findall(r'<tr data-model="([^"]+)" data-timeframe="([^"]+)" data-verdict="([^"]+)">', page.text)
        assert rows == [(t["model_name"], t["timeframe"], t["verdict"]) for t in api["path_scores"]]
        assert ("sharp", "1h", "edge") in rows and ("wild", "1h", "worse than random walk") in rows
