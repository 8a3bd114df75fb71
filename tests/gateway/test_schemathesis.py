"""Property tests of the gateway against its own OpenAPI schema (schemathesis), with API keys configured and with
none, on a real server: no answer is a 5xx, and status codes, content types and bodies are the ones the schema
declares. Bounded: a few examples per operation (the whole file in well under a minute)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.gateway import support

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture(scope="module", params=["keys", "no-keys"])
def served(request: pytest.FixtureRequest, seeded_url: str) -> Iterator[support.GatewayServer]:
    keys = ["test-key-1"] if request.param == "keys" else []
    # no rate limit: the examples come quickly from one address
    settings_ = support.settings_for(seeded_url, api_keys=keys, rate_limit_per_minute=0)
    with support.GatewayServer(settings_) as server:
        yield server


@pytest.fixture(scope="module")
def gateway_schema(served: support.GatewayServer) -> Any:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@EXAMPLES
def test_every_answer_conforms_to_the_schema_and_none_is_a_server_error(
    case: Any, served: support.GatewayServer
) -> None:
    case.call_and_validate(base_url=served.url, headers={"x-api-key": "test-key-1"}, checks=CHECKS)


@schema.parametrize()
@EXAMPLES
def test_without_a_key_answers_conform_too(case: Any, served: support.GatewayServer) -> None:
    case.call_and_validate(base_url=served.url, checks=CHECKS)
