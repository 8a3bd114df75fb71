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
    assert {k: series[k] for k in showcase if k != "stale"} == {k: v for k, v in showcase.items() if k != "stale"}
    assert data["models"] == ["baseline", "kronos-small"] and data["timeframes"] == ["1h", "1d"]
    assert data["selected"] == "baseline|1h"


def test_unknown_and_malformed_symbols_get_error_pages(gateway: Any) -> None:
    unknown = gateway.get("/symbol/NOPE")
    assert unknown.status_code == 404 and "unknown symbol" in unknown.text
    malformed = gateway.get("/symbol/bad$symbol")
    assert malformed.status_code == 422 and "symbol: malformed symbol" in malformed.text
    assert gateway.get("/?timeframe=5m").status_code == 422
    assert gateway.get("/evaluation?window=never").status_code == 422


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
