"""What the gateway shows and to whom: no internals in errors, proxy headers, /metrics access, security
headers, CORS, and the refusal to listen openly on a non-loopback address."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url
from tests.gateway import support

from candlecast.config import Settings
from candlecast.errors import InputError
from candlecast.gateway.app import check_exposure

SHOWCASE = "/showcase/ml-prediction/BTCUSDT"


def test_database_errors_reach_the_log_not_the_client(seeded_url: str) -> None:
    target = make_url(seeded_url)
    proxy = support.TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.cut()  # the database is away from the start: nothing is cached
    settings = support.settings_for(proxy.url_for(seeded_url), db_timeout_s=0.5, db_retry_s=0.2)
    with support.GatewayServer(settings) as gateway:
        answers = [gateway.get(SHOWCASE), gateway.get("/health")]
    assert answers[0].status_code == 503 and answers[1].status_code == 200
    assert answers[1].json()["database"]["up"] is False
    for answer in answers:
        text = answer.text
        assert str(proxy.port) not in text and "127.0.0.1" not in text and "sqlalche" not in text, text


def test_a_forged_forwarded_for_does_not_dodge_the_rate_limit(seeded_url: str) -> None:
    with support.GatewayServer(support.settings_for(seeded_url, public_rate_limit_per_minute=3)) as gateway:
        statuses = [gateway.get(SHOWCASE, headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code for i in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]


def test_forwarded_for_is_believed_from_a_configured_proxy(seeded_url: str) -> None:
    settings = support.settings_for(seeded_url, public_rate_limit_per_minute=3, forwarded_allow_ips=["127.0.0.1"])
    with support.GatewayServer(settings) as gateway:
        statuses = [gateway.get(SHOWCASE, headers={"x-forwarded-for": f"198.51.100.{i}"}).status_code for i in range(5)]
        # and a client the proxy says is remote is not shown /metrics (loopback only by default)
        remote_metrics = gateway.get("/metrics", headers={"x-forwarded-for": "198.51.100.9"})
        local_metrics = gateway.get("/metrics")
    assert statuses == [200] * 5
    assert remote_metrics.status_code == 404 and local_metrics.status_code == 200


def test_metrics_behind_a_key_when_configured(seeded_url: str) -> None:
    with support.GatewayServer(support.settings_for(seeded_url, metrics_access="key")) as gateway:
        assert gateway.get("/metrics").status_code == 401
        assert gateway.get("/metrics", headers={"x-api-key": "wrong"}).status_code == 403
        assert gateway.get("/metrics", headers={"x-api-key": "test-key-1"}).status_code == 200


def test_pages_and_api_answers_carry_security_headers(gateway: support.GatewayServer) -> None:
    gateway.get(SHOWCASE)  # the second read is a fresh cache hit, answered by the fast path
    for path in ("/", SHOWCASE, "/api/v1/instruments", "/docs"):
        headers = gateway.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
    assert "script-src 'self';" in gateway.get("/").headers["content-security-policy"]
    assert gateway.get(SHOWCASE).headers["content-security-policy"].startswith("default-src 'none'")


def test_a_fast_path_hit_answers_with_the_headers_of_the_full_stack(gateway: support.GatewayServer) -> None:
    url = SHOWCASE  # a new gateway: the first read is a miss
    miss = gateway.get(url)  # through every layer and the FastAPI route
    hit = gateway.get(url)  # a fresh hit: the outermost fast path alone
    not_modified = [gateway.get(url, headers={"if-none-match": miss.headers["etag"]}) for _ in range(2)]

    def shown(answer: Any) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in answer.headers.multi_items() if k not in ("date", "server"))

    assert miss.status_code == hit.status_code == 200 and miss.content == hit.content
    assert shown(hit) == shown(miss)
    assert "Origin" in hit.headers["vary"] and hit.headers["x-content-type-options"] == "nosniff"
    assert [a.status_code for a in not_modified] == [304, 304] and shown(not_modified[1]) == shown(not_modified[0])


def test_cors_allows_cross_origin_gets_without_credentials(gateway: support.GatewayServer) -> None:
    answer = gateway.get(SHOWCASE, headers={"origin": "https://example.org"})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers
    preflight = gateway.client.options(
        "/mcp", headers={"origin": "https://example.org", "access-control-request-method": "POST"}
    )
    assert preflight.status_code == 400 and "POST" not in preflight.headers.get("access-control-allow-methods", "")


def test_no_cors_headers_when_no_origin_is_allowed(seeded_url: str) -> None:
    with support.GatewayServer(support.settings_for(seeded_url, cors_allow_origins=[])) as gateway:
        answer = gateway.get(SHOWCASE, headers={"origin": "https://example.org"})
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.example"])
def test_refuses_a_non_loopback_bind_without_api_keys(host: str) -> None:
    with pytest.raises(InputError) as refused:
        check_exposure(Settings(gateway={"host": host}))
    assert refused.value.field == "gateway.api_keys"
    check_exposure(Settings(gateway={"host": host, "api_keys": ["k"]}))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_a_loopback_bind_needs_no_keys(host: str) -> None:
    check_exposure(Settings(gateway={"host": host}))
