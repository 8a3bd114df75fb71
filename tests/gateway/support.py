"""Shared by the gateway tests, pages included (imported as ``tests.gateway.support``; tests are not a package).

- ``seed_store``: a small historical replay in a real database: instruments, 1h and 1d candles, forecasts by two
  models (earlier ones scored by the real scoring job, which also writes ``job_runs``).
- ``GatewayServer``: the real gateway app under uvicorn on a free port, in a thread.
- fixtures ``seeded_url`` (the seeded database that tests only read), ``own_seeded_url`` (one per module, for
  tests that write), ``store`` (an engine on ``seeded_url``) and ``gateway`` (a server with a fresh cache per
  test), imported by the conftests.
- ``seed_extras``: what a first-time user meets in the demo, added to the seeded replay (fixture ``extended_url``,
  gateway ``extended_gateway``): QQQ, an index level standing in for an equity, with business-day candles, volume
  and a daily forecast made before its last candles (so realised candles follow it), and AAPL, whose candles end
  years before any forecast.
- ``seed_track_records``: enough scored history for a verdict, added to the seeded replay (fixture ``tracked_url``,
  gateway ``tracked_gateway``): two more 1h models on BTCUSDT with 45 scored forecasts each, ``sharp`` (paths
  within 0.1% of what happened: an edge over the random walk) and ``wild`` (5% off: worse than it), and two scored
  daily baseline forecasts of SPY six weeks apart, so the trailing 30-day window holds one of them.
- ``TcpProxy``: a TCP relay to Postgres that a test can cut, to take the database away from one gateway only.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sqlalchemy.engine import Engine, make_url

from candlecast.config import Settings
from candlecast.gateway import create_app
from candlecast.gateway.app import server_config
from candlecast.gateway.payloads.fields import price_decimals
from candlecast.jobs.scoring import run_scoring
from candlecast.store import create_engine_for
from candlecast.store.candles import Instrument, latest_candles, upsert_candles, upsert_instruments
from candlecast.store.predictions import Prediction, upsert_prediction

AS_OF = datetime(2024, 3, 1, 12, tzinfo=UTC)  # the replay clock of the seeded store
SYMBOLS = {"BTCUSDT": "crypto", "SPY": "equity", "EURUSD": "fx"}
LABELS = {  # name, quote currency: SPY is a proxy, as in the shipped sample data
    "BTCUSDT": ("Bitcoin in USD", "USD"),
    "SPY": ("S&P 500 index level (^GSPC), proxy for SPY", "USD"),
    "EURUSD": ("Euro / US dollar", "USD"),
}
MODELS_1H = ("baseline", "kronos-small")
PRED_LEN = {"1h": 24, "1d": 10}
STEP = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def candles(symbol_index: int, start: datetime, n: int, step: timedelta, level: float) -> pd.DataFrame:
    rng = np.random.default_rng(100 + symbol_index)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[level, close[:-1]]
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    ts = pd.date_range(start, periods=n, freq=pd.Timedelta(step), tz="UTC")
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": 10.0})


def forecast(
    symbol: str, model: str, timeframe: str, as_of: datetime, last_close: float, seed: int, spread: float = 0.01
) -> Prediction:
    """A forecast with 32 random-walk sample paths and their p10/p50/p90."""
    n = PRED_LEN[timeframe]
    rng = np.random.default_rng(seed)
    samples = last_close * np.exp(np.cumsum(rng.normal(0, spread, (32, n)), axis=1))
    targets = [as_of + STEP[timeframe] * (h + 1) for h in range(n)]
    return Prediction(
        symbol=symbol, timeframe=timeframe, model_name=model, as_of=as_of, target_ts=targets,
        p10=np.quantile(samples, 0.1, axis=0), p50=np.quantile(samples, 0.5, axis=0),
        p90=np.quantile(samples, 0.9, axis=0), last_close=last_close, samples=samples, model_version="test-1",
    )  # fmt: skip


def rounded(values: Any, level: float) -> list[float]:
    """``values`` as the gateway serves prices at ``level`` (six significant digits, at least two decimals)."""
    return [round(float(v), price_decimals(level)) for v in np.atleast_1d(values)]


def insert(engine: Engine, p: Prediction) -> int:
    with engine.begin() as conn:
        return upsert_prediction(conn, p)


def seed_store(engine: Engine) -> None:
    """Three instruments; forecasts as of AS_OF (newest) and three earlier 1h slots that get scored."""
    with engine.begin() as conn:
        upsert_instruments(
            conn, [Instrument(s, c, *LABELS[s][:1], quote_currency=LABELS[s][1]) for s, c in SYMBOLS.items()]
        )
        for i, symbol in enumerate(SYMBOLS):
            level = (40_000.0, 500.0, 1.08)[i]
            hourly = candles(i, AS_OF - timedelta(hours=200), 200, STEP["1h"], level)
            upsert_candles(conn, symbol, "1h", hourly)
            upsert_candles(conn, symbol, "1d", candles(i, AS_OF - timedelta(days=60, hours=12), 60, STEP["1d"], level))
    seed = 0
    for symbol in SYMBOLS:
        for model in MODELS_1H:
            for back in (72, 48, 24, 0):  # hours before AS_OF; the earlier three are scored
                as_of = AS_OF - timedelta(hours=back)
                seed += 1
                insert(engine, forecast(symbol, model, "1h", as_of, last_close_at(engine, symbol, as_of), seed))
        seed += 1
        insert(engine, forecast(symbol, "baseline", "1d", AS_OF, last_close_at(engine, symbol, AS_OF), seed, 0.02))
    run_scoring(Settings(), engine, "1h", as_of=AS_OF)


QQQ_AS_OF = datetime(2024, 2, 16, tzinfo=UTC)  # a Friday: QQQ's daily forecast, 10 business days before AS_OF
EXTRA_LABELS = {"QQQ": ("Nasdaq Composite index level (^IXIC), proxy for QQQ", "USD"), "AAPL": ("Apple Inc.", "USD")}


def business_candles(seed: int, first: str, last: str, level: float) -> pd.DataFrame:
    """Daily candles on weekdays only (stamped 00:00 UTC), with volume."""
    ts = pd.bdate_range(first, last, tz="UTC")
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    open_ = np.r_[level, close[:-1]]
    high, low = np.maximum(open_, close) * 1.003, np.minimum(open_, close) * 0.997
    volume = rng.uniform(1e8, 3e8, len(ts)).round()
    return pd.DataFrame({"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


def seed_extras(engine: Engine) -> None:
    with engine.begin() as conn:
        upsert_instruments(
            conn,
            [
                Instrument("QQQ", "equity", EXTRA_LABELS["QQQ"][0], quote_currency="USD"),
                Instrument("AAPL", "equity", EXTRA_LABELS["AAPL"][0], quote_currency="USD"),
            ],
        )
        upsert_candles(conn, "QQQ", "1d", business_candles(7, "2023-10-02", "2024-03-01", 15_000.0))
        upsert_candles(conn, "AAPL", "1d", business_candles(8, "2012-10-01", "2013-03-01", 450.0))
    history = latest_candles(engine, "QQQ", "1d", 1, QQQ_AS_OF)
    last_ts, last_close = history["ts"].iloc[-1], float(history["close"].iloc[-1])
    targets = list(pd.bdate_range(last_ts + pd.Timedelta(days=1), periods=10, tz="UTC").to_pydatetime())
    rng = np.random.default_rng(77)
    samples = last_close * np.exp(np.cumsum(rng.normal(0, 0.012, (32, 10)), axis=1))
    insert(
        engine,
        Prediction(
            symbol="QQQ", timeframe="1d", model_name="baseline", as_of=QQQ_AS_OF, target_ts=targets,
            p10=np.quantile(samples, 0.1, axis=0), p50=np.quantile(samples, 0.5, axis=0),
            p90=np.quantile(samples, 0.9, axis=0), last_close=last_close, samples=samples, model_version="test-1",
            event_context={"last_candle": last_ts.isoformat(), "context_candles": 97},
        ),
    )  # fmt: skip


TRACKED_SLOTS = 45  # scored forecasts of each tracked model: above gateway.track_record_min_scored (30)
OLD_DAILY = (datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 2, 15, tzinfo=UTC))  # SPY baseline 1d, both scored


def _tracked(symbol: str, model: str, timeframe: str, as_of: datetime, closes: pd.Series, seed: int) -> Prediction:
    """A forecast whose 32 paths sit within 0.1% of what happened (``sharp``), 5% above the last close
    (``wild``), or around the last close with a random walk's spread (anything else)."""
    n, step = PRED_LEN[timeframe], STEP[timeframe]
    rng = np.random.default_rng(seed)
    last = float(closes[closes.index < as_of].iloc[-1])
    targets = [as_of + step * h for h in range(n)]
    realised = closes.reindex(pd.DatetimeIndex(targets)).fillna(last).to_numpy()
    noise = rng.normal(0, 0.001, (32, n))
    if model == "sharp":
        samples = realised * np.exp(noise)
    elif model == "wild":
        samples = last * 1.05 * np.exp(noise)
    else:
        samples = last * np.exp(np.cumsum(rng.normal(0, 0.01, (32, n)), axis=1))
    return Prediction(
        symbol=symbol, timeframe=timeframe, model_name=model, as_of=as_of, target_ts=targets,
        p10=np.quantile(samples, 0.1, axis=0), p50=np.quantile(samples, 0.5, axis=0),
        p90=np.quantile(samples, 0.9, axis=0), last_close=last, samples=samples, model_version="test-1",
    )  # fmt: skip


def seed_track_records(engine: Engine) -> None:
    hourly = latest_candles(engine, "BTCUSDT", "1h", 200, AS_OF).set_index("ts")["close"]
    seed = 1000
    for k in range(TRACKED_SLOTS):
        as_of = AS_OF - timedelta(hours=80 - k)  # the last at AS_OF - 36 h: every step closed by AS_OF
        for model in ("sharp", "wild"):
            seed += 1
            insert(engine, _tracked("BTCUSDT", model, "1h", as_of, hourly, seed))
    daily = latest_candles(engine, "SPY", "1d", 60, AS_OF).set_index("ts")["close"]
    for as_of in OLD_DAILY:
        seed += 1
        insert(engine, _tracked("SPY", "baseline", "1d", as_of, daily, seed))
    run_scoring(Settings(), engine, "1h", as_of=AS_OF)
    run_scoring(Settings(), engine, "1d", as_of=AS_OF)


def last_close_at(engine: Engine, symbol: str, as_of: datetime) -> float:
    frame = latest_candles(engine, symbol, "1h", 1, as_of)
    return float(frame["close"].iloc[-1])


def settings_for(url: str, **gateway: Any) -> Settings:
    return Settings(database_url=url, gateway={"api_keys": ["test-key-1", "test-key-2"], **gateway})


class GatewayServer:
    """``create_app(settings)`` served by uvicorn on a free port in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = server_config(self.app, settings, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        # one client for the test (creating an httpx client costs ~30 ms: it builds an SSL context)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def __enter__(self) -> GatewayServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 15, "the gateway did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)


def wait_until(check: Callable[[], Any], timeout_s: float, message: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.01)


@dataclass
class _Pipe:
    a: socket.socket
    b: socket.socket


class TcpProxy:
    """Relays 127.0.0.1:<port> to a target; ``cut()`` closes the listener and every relayed connection (the
    database "goes away" for whoever connects through it), ``restore()`` listens again on the same port.
    ``freeze()`` keeps every connection open and accepts new ones but relays nothing, as a database process
    stopped with SIGSTOP looks from the network (the kernel still accepts and acknowledges); ``thaw()`` resumes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._pipes: list[_Pipe] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()  # cleared by freeze(): connections stay open, nothing gets through
        self._flowing.set()
        self.restore()

    def url_for(self, db_url: str) -> str:
        return make_url(db_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pipe = _Pipe(client, upstream)
            with self._lock:
                self._pipes.append(pipe)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            for s in (pipe.a, pipe.b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# -- fixtures (imported into tests/gateway/conftest.py, which tests/gateway/pages/ shares) ---------------------


def _seeded_database(new_database: Callable[[], str]) -> str:
    url = new_database()
    engine = create_engine_for(url)
    seed_store(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def seeded_url(new_database: Callable[[], str]) -> str:
    """A migrated database holding the seeded replay, shared by every test that only reads it."""
    return _seeded_database(new_database)


@pytest.fixture(scope="module")
def own_seeded_url(new_database: Callable[[], str]) -> str:
    """A seeded database of the test module's own, for tests that write to it."""
    return _seeded_database(new_database)


@pytest.fixture(scope="session")
def extended_url(new_database: Callable[[], str]) -> str:
    """The seeded replay plus ``seed_extras`` (QQQ and AAPL), read only."""
    url = _seeded_database(new_database)
    engine = create_engine_for(url)
    seed_extras(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def tracked_url(new_database: Callable[[], str]) -> str:
    """The seeded replay plus ``seed_track_records``, read only."""
    url = _seeded_database(new_database)
    engine = create_engine_for(url)
    seed_track_records(engine)
    engine.dispose()
    return url


@pytest.fixture
def tracked_gateway(tracked_url: str) -> Iterator[GatewayServer]:
    with GatewayServer(settings_for(tracked_url)) as server:
        yield server


@pytest.fixture
def tracked_store(tracked_url: str) -> Iterator[Engine]:
    engine = create_engine_for(tracked_url)
    yield engine
    engine.dispose()


@pytest.fixture
def extended_gateway(extended_url: str) -> Iterator[GatewayServer]:
    with GatewayServer(settings_for(extended_url)) as server:
        yield server


@pytest.fixture
def store(seeded_url: str) -> Iterator[Engine]:
    engine = create_engine_for(seeded_url)
    yield engine
    engine.dispose()


@pytest.fixture
def gateway(seeded_url: str) -> Iterator[GatewayServer]:
    """A gateway with a fresh cache on the seeded database."""
    with GatewayServer(settings_for(seeded_url)) as server:
        yield server
