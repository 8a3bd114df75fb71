"""Gateway replicas: two gateway processes (real uvicorn subprocesses, ``candlecast.gateway.serve``) on one database
stay coherent, share their rate limits through Redis (each limits on its own when Redis is away), and a gateway
with a read replica reads there while it LISTENs on the primary."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from tests.gateway import support

from candlecast.store import create_engine_for

REDIS_URL = os.environ.get("CANDLECAST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVE = "from candlecast.config import Settings; from candlecast.gateway import serve; serve(Settings())"


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def gateway_process(url: str, **gateway: str) -> Iterator[str]:
    """A gateway in its own process (``serve``, as ``candlecast serve-gateway`` runs it); yields its base URL."""
    port = support.free_port()
    env = dict(
        os.environ,
        CANDLECAST_DATABASE_URL=url,
        CANDLECAST_GATEWAY__PORT=str(port),
        CANDLECAST_GATEWAY__API_KEYS='["test-key-1"]',
        CANDLECAST_LOG_LEVEL="WARNING",
        **{f"CANDLECAST_GATEWAY__{k.upper()}": v for k, v in gateway.items()},
    )
    proc = subprocess.Popen([sys.executable, "-c", SERVE], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        support.wait_until(lambda: _health(base), 30, "the gateway process did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _health(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def newest_as_of(base: str) -> str:
    return str(httpx.get(f"{base}/showcase/ml-prediction/BTCUSDT", timeout=5).json()["as_of"])


def test_a_forecast_inserted_once_is_served_fresh_by_both_replicas_within_a_second(own_seeded_url: str) -> None:
    with gateway_process(own_seeded_url) as a, gateway_process(own_seeded_url) as b:
        before = {newest_as_of(a), newest_as_of(b)}  # both have the old answer cached
        assert len(before) == 1
        engine = create_engine_for(own_seeded_url)
        new_as_of = support.AS_OF + timedelta(hours=1)
        close = support.last_close_at(engine, "BTCUSDT", support.AS_OF)
        support.insert(engine, support.forecast("BTCUSDT", "baseline", "1h", new_as_of, close, seed=4242))
        engine.dispose()
        inserted = time.monotonic()
        seen: dict[str, float] = {}
        while len(seen) < 2 and time.monotonic() - inserted < 5:
            for base in (a, b):
                if base not in seen and newest_as_of(base) == new_as_of.isoformat().replace("+00:00", "Z"):
                    seen[base] = time.monotonic() - inserted
            time.sleep(0.02)
        assert set(seen) == {a, b}, seen
        assert max(seen.values()) < 1.0, seen


def spend(base: str, n: int) -> list[int]:
    headers = {"x-api-key": "test-key-1"}
    return [httpx.get(f"{base}/api/v1/instruments", headers=headers, timeout=5).status_code for _ in range(n)]


@pytest.mark.skipif(not redis_answers(), reason="no Redis at CANDLECAST_TEST_REDIS_URL / 127.0.0.1:6379")
def test_two_replicas_share_one_rate_limit_through_redis(seeded_url: str) -> None:
    shared = {"rate_limit_per_minute": "6", "rate_limit_redis_url": REDIS_URL,
              "rate_limit_redis_prefix": f"candlecast-test:{uuid.uuid4().hex}:"}  # fmt: skip
    with gateway_process(seeded_url, **shared) as a, gateway_process(seeded_url, **shared) as b:
        statuses = spend(a, 4) + spend(b, 4)
    # one bucket of 6 (refilling 0.1 a second) for both: per process, all 8 would pass
    assert statuses.count(200) in (6, 7), statuses
    assert set(statuses) == {200, 429}


def test_replicas_limit_on_their_own_when_redis_is_unreachable(seeded_url: str) -> None:
    down = {"rate_limit_per_minute": "3", "rate_limit_redis_url": f"redis://127.0.0.1:{support.free_port()}/0"}
    with gateway_process(seeded_url, **down) as a, gateway_process(seeded_url, **down) as b:
        statuses = spend(a, 4) + spend(b, 4)
    assert statuses == [200, 200, 200, 429] * 2  # never a 5xx because of Redis; each process keeps its own limit


def test_reads_go_to_the_read_replica_and_listen_stays_on_the_primary(
    own_seeded_url: str, new_database: Callable[[], str]
) -> None:
    replica_url = support._seeded_database(new_database)  # stands in for a streaming replica of the primary
    with gateway_process(own_seeded_url, read_database_url=replica_url) as gw:
        old = newest_as_of(gw)
        replica = create_engine_for(replica_url)
        new_as_of = support.AS_OF + timedelta(hours=2)
        close = support.last_close_at(replica, "BTCUSDT", support.AS_OF)
        support.insert(replica, support.forecast("BTCUSDT", "baseline", "1h", new_as_of, close, seed=77))
        replica.dispose()
        time.sleep(0.5)
        assert newest_as_of(gw) == old  # the replica's own NOTIFY is not heard: the gateway listens on the primary
        primary = create_engine_for(own_seeded_url)
        with primary.begin() as conn:  # what the primary sends when it commits the row the replica then holds
            conn.execute(text("""SELECT pg_notify('ml_predictions', '{"symbol": "BTCUSDT"}')"""))
        primary.dispose()
        expected = new_as_of.isoformat().replace("+00:00", "Z")
        support.wait_until(lambda: newest_as_of(gw) == expected, 5, "the gateway did not read the replica")
        assert old != expected
