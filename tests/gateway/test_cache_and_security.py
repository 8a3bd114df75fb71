"""The cache's invalidation rules, the rate limiter and key checks, without a server."""

from __future__ import annotations

import threading
from pathlib import Path

from candlecast.gateway.cache import ALL_SYMBOLS, ResponseCache
from candlecast.gateway.responses import etag_matches
from candlecast.gateway.security import ApiKeys, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(clock: Clock) -> ResponseCache:
    cache = ResponseCache("public, max-age=5", "public, max-age=0", clock=clock)
    cache.listening = True
    return cache


def test_entries_expire_after_their_ttl_but_stay_available_for_stale_serving() -> None:
    clock = Clock()
    cache = make_cache(clock)
    cache.put(("k",), 200, {"x": 1, "stale": False}, 10.0, "BTCUSDT", cache.token("BTCUSDT"))
    assert cache.fresh(("k",)) is not None
    clock.now += 10.0
    assert cache.fresh(("k",)) is None
    entry = cache.get(("k",))
    assert entry is not None
    stale_body, stale_etag = entry.stale_body()
    assert stale_body == b'{"x":1,"stale":true}' and stale_etag != entry.etag


def test_a_notification_invalidates_its_symbol_and_all_symbol_views_only() -> None:
    cache = make_cache(Clock())
    for key, scope in (("btc", "BTCUSDT"), ("spy", "SPY"), ("home", ALL_SYMBOLS), ("perf", None)):
        cache.put((key,), 200, {}, 60.0, scope, cache.token(scope))
    cache.invalidate_symbol("BTCUSDT")
    assert cache.fresh(("btc",)) is None and cache.fresh(("home",)) is None
    assert cache.fresh(("spy",)) is not None and cache.fresh(("perf",)) is not None


def test_a_load_that_raced_a_notification_is_stored_but_not_trusted() -> None:
    cache = make_cache(Clock())
    token = cache.token("BTCUSDT")  # taken before reading the database
    cache.invalidate_symbol("BTCUSDT")  # a new row was committed meanwhile
    cache.put(("btc",), 200, {}, 60.0, "BTCUSDT", token)
    assert cache.fresh(("btc",)) is None and cache.get(("btc",)) is not None
    cache.put(("btc",), 200, {}, 60.0, "BTCUSDT", cache.token("BTCUSDT"))
    assert cache.fresh(("btc",)) is not None


def test_without_a_listen_connection_forecast_entries_are_not_trusted() -> None:
    cache = make_cache(Clock())
    cache.put(("btc",), 200, {}, 60.0, "BTCUSDT", cache.token("BTCUSDT"))
    cache.put(("perf",), 200, {}, 60.0, None, cache.token(None))
    cache.listening = False
    assert cache.fresh(("btc",)) is None
    assert cache.fresh(("perf",)) is not None  # TTL-only entries do not depend on NOTIFY


def test_past_its_size_bound_the_cache_drops_the_oldest_loaded_entries() -> None:
    cache = ResponseCache("public", "public", clock=Clock(), max_bytes=3 * 1100)
    for key in ("a", "b", "c", "d"):
        cache.put((key,), 200, {"pad": "x" * 40}, 60.0, None, cache.token(None))
    assert list(cache.entries) == [("b",), ("c",), ("d",)]
    cache.put(("b",), 200, {"pad": "y"}, 60.0, None, cache.token(None))  # a reload counts as newest
    cache.put(("e",), 200, {"pad": "z"}, 60.0, None, cache.token(None))
    assert list(cache.entries) == [("d",), ("b",), ("e",)]
    assert cache.size_bytes == sum(len(e.body) + 1024 for e in cache.entries.values())


def test_rate_limiter_refills_at_the_limit_per_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one token per second, bursts of 60
    assert all(limiter.take("a") is None for _ in range(60))
    denied = limiter.take("a")
    assert denied is not None and denied.status == 429 and denied.headers["retry-after"] == "1"
    assert limiter.take("b") is None  # buckets are independent
    clock.now += 1.0
    assert limiter.take("a") is None and limiter.take("a") is not None
    assert RateLimiter(0).take("a") is None  # 0 disables


def test_rate_limiter_forgets_only_buckets_that_refilled() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock, max_buckets=2)
    limiter.take("old")
    clock.now += 120
    limiter.take("recent")
    limiter.take("new")  # full: "old" has refilled completely and is dropped
    assert set(limiter._buckets) == {"recent", "new"}


def test_api_keys_401_without_403_wrong_none_when_right() -> None:
    keys = ApiKeys(["alpha", "beta"])
    assert keys.check(None).status == 401  # type: ignore[union-attr]
    assert keys.check("alph").status == 403  # type: ignore[union-attr]
    assert keys.check("beta") is None


def test_with_no_key_configured_the_refusal_says_so_and_how_to_set_one() -> None:
    for presented in (None, "anything"):
        denied = ApiKeys([]).check(presented)
        assert denied is not None and denied.status == 403
        assert denied.detail.startswith("no API key is configured on this gateway")
        assert "CANDLECAST_GATEWAY__API_KEYS" in denied.detail and "missing" not in denied.detail


def test_if_none_match_uses_weak_comparison_and_lists() -> None:
    assert etag_matches(b'"a"', b'"a"')
    assert etag_matches(b'W/"a"', b'"a"')
    assert etag_matches(b'"x", "a"', b'"a"')
    assert etag_matches(b"*", b'"a"')
    assert not etag_matches(b'"b"', b'"a"')


def test_unknown_symbol_answers_never_evict_a_served_forecast() -> None:
    cache = ResponseCache("public", "public", clock=Clock(), max_bytes=4 * 1100)
    cache.put(("showcase", "BTCUSDT"), 200, {"symbol": "BTCUSDT"}, 60.0, "BTCUSDT", cache.token("BTCUSDT"))
    for i in range(1500):  # a flood of well-formed unknown symbols, each a cached 404
        cache.put(("showcase", f"NOPE{i}"), 404, {"detail": f"unknown symbol 'NOPE{i}'"}, 60.0, None, (0, 0))
    assert cache.get(("showcase", "BTCUSDT")) is not None
    errors = [key for key, entry in cache.entries.items() if entry.status == 404]
    assert 0 < len(errors) <= 1 and errors[-1] == ("showcase", "NOPE1499")  # the newest 404s, within their budget
    assert cache.size_bytes == sum(len(e.body) + 1024 for e in cache.entries.values())


def test_served_forecasts_push_out_older_forecasts_not_the_404s() -> None:
    cache = ResponseCache("public", "public", clock=Clock(), max_bytes=2 * 1100, error_max_bytes=2 * 1100)
    cache.put(("nope",), 404, {"detail": "unknown"}, 60.0, None, (0, 0))
    for key in ("a", "b", "c"):
        cache.put((key,), 200, {"pad": "x"}, 60.0, None, cache.token(None))
    assert list(cache.entries) == [("nope",), ("b",), ("c",)]


def test_saving_while_requests_add_entries_copies_them_first(tmp_path: Path) -> None:
    cache = ResponseCache("public", "public", clock=Clock())
    for i in range(20_000):
        cache.put((f"k{i}",), 200, {"i": i}, 60.0, None, (0, 0))
    stop = threading.Event()

    def add() -> None:
        i = 0
        while not stop.is_set():
            cache.put((f"new{i}",), 200, {"i": i}, 60.0, None, (0, 0))
            i += 1

    adder = threading.Thread(target=add)
    adder.start()
    try:
        saved = [cache.save(tmp_path / "snapshot.json") for _ in range(5)]
    finally:
        stop.set()
        adder.join()
    assert all(n >= 20_000 for n in saved)
    restored = ResponseCache("public", "public", clock=Clock())
    assert restored.restore(tmp_path / "snapshot.json") == saved[-1]
