"""Property tests of the inference service against its own OpenAPI schema (schemathesis), with a bearer token
configured and with none, on a real uvicorn server running the baseline model (no weights): no answer is a 5xx,
and status codes, content types and bodies are the ones the schema declares. Calls with the token, and calls
without it (401 from a server that has one). Bounded: a few examples per operation and small limits on the
request's work, so the model calls stay cheap."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

from candlecast.config import InferenceSettings, Settings
from candlecast.inference.app import create_app

TOKEN = "test-inference-token"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture(scope="module", params=["token", "no-token"])
def served(request: pytest.FixtureRequest, serve_app: Callable[..., Any]) -> Iterator[str]:
    inference = InferenceSettings(
        token=TOKEN if request.param == "token" else None,
        max_pred_len=8,
        max_sample_count=8,
        default_sample_count=4,
        max_context_candles=64,
        max_body_bytes=200_000,
        load_adapters=False,
    )
    # the in-process baseline registry: loaded at start-up from the settings, no weights
    with serve_app(create_app(Settings(models="baseline", inference=inference))) as url:
        yield url


@pytest.fixture(scope="module")
def inference_schema(served: str) -> Any:
    # the schema itself is behind the token when there is one
    return schemathesis.openapi.from_url(f"{served}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})


schema = schemathesis.pytest.from_fixture("inference_schema")


@schema.parametrize()
@EXAMPLES
def test_every_answer_conforms_to_the_schema_and_none_is_a_server_error(case: Any, served: str) -> None:
    case.call_and_validate(base_url=served, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


@schema.parametrize()
@EXAMPLES
def test_without_the_token_answers_conform_too(case: Any, served: str) -> None:
    case.call_and_validate(base_url=served, checks=CHECKS)
