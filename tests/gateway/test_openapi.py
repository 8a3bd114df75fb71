"""The OpenAPI schema describes the API as it answers (key, answer models, error answers, timestamp conventions),
and /docs and /redoc are served with their assets from the package, not from a CDN."""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

API_OPERATIONS = [
    "/api/v1/predictions/{symbol}", "/api/v1/instruments", "/api/v1/performance", "/api/v1/jobs", "/api/v1/probability",
]  # fmt: skip


def test_openapi_declares_the_api_key_answer_models_and_error_answers(gateway: Any) -> None:
    spec = gateway.get("/openapi.json").json()
    assert spec["info"]["version"] == metadata.version("candlecast")
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A key from gateway.api_keys (CANDLECAST_GATEWAY__API_KEYS, a JSON list).",
    }
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # every 422 is the one ErrorBody shape
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path in API_OPERATIONS:
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"ApiKey": []}], path
        for status in ("401", "403", "429", "503"):
            assert operation["responses"][status]["content"]["application/json"]["schema"] == error, (path, status)
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].removeprefix("#/components/schemas/") in schemas, path
    for path in ("/api/v1/predictions/{symbol}", "/showcase/ml-prediction/{symbol}"):
        responses = spec["paths"][path]["get"]["responses"]
        assert {"200", "404", "422"} <= set(responses)
        assert "available" in responses["404"]["description"]
    probability = spec["paths"]["/api/v1/probability"]["get"]
    question = next(p for p in probability["parameters"] if p["name"] == "question")
    assert question["required"] is True
    assert question["schema"]["enum"] == ["touch", "close", "first", "drawdown", "runup"]
    assert {"200", "404", "422"} <= set(probability["responses"]) and "PathAnswer" in schemas
    showcase = spec["paths"]["/showcase/ml-prediction/{symbol}"]["get"]
    assert "security" not in showcase and "newest timeframe" in str(showcase["parameters"])
    assert spec["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }

    # timestamps label the candle's open time, said where a client reads the fields
    forecast = schemas["Forecast"]["properties"]
    assert "open time" in forecast["target_timestamps"]["description"]
    assert "open time" in schemas["Candles"]["properties"]["ts"]["description"]
    assert "replay" in forecast["data_mode"]["description"]
    assert (
        "**open** time" in spec["info"]["description"] and "CANDLECAST_GATEWAY__API_KEYS" in spec["info"]["description"]
    )


def test_docs_and_redoc_load_their_assets_from_the_gateway(gateway: Any) -> None:
    for page, assets in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        html = gateway.get(page).text
        assert "/openapi.json" in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), page  # nothing from another host
        for name in assets:
            url = re.search(rf"""/static/docs/{re.escape(name)}\?v=[0-9a-f]+""", html)
            assert url is not None, (page, name)
            response = gateway.get(url.group(0), headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200 and len(response.content) > 100_000
            assert "immutable" in response.headers["cache-control"]
    assert gateway.get("/static/docs/nothing.js").status_code == 404
