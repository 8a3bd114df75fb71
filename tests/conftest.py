"""Shared fixtures: a real PostgreSQL for the whole run, one fresh database per test session.

The server is, in order: ``CANDLECAST_TEST_DATABASE_URL``; the local server at 127.0.0.1:5432;
else a private embedded PostgreSQL started for the run. Each run creates its own database
(``candlecast_test_<random>``), migrates it, and drops it at the end.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from candlecast.store import create_engine_for, upgrade
from candlecast.store.db import embedded_postgres_url

FIXTURES = Path(__file__).parent / "fixtures"
_TABLES = (
    "signal_evaluations, ml_predictions, ohlcv_1h, ohlcv_1d, economic_calendar, central_bank_rates, "
    "job_runs, model_adapters, instruments"
)


def _local_server_up() -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a maintenance database on a real PostgreSQL server."""
    if url := os.environ.get("CANDLECAST_TEST_DATABASE_URL"):
        return url
    if _local_server_up():
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return embedded_postgres_url(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def new_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, migrated databases on the test server; all are dropped at the end."""
    admin = create_engine_for(pg_server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make() -> str:
        name = f"candlecast_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(pg_server_url).set(drivername="postgresql+psycopg", database=name)
        url_text = url.render_as_string(hide_password=False)
        engine = create_engine_for(url_text)
        upgrade(engine)
        engine.dispose()
        return url_text

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def db_url(new_database: Callable[[], str]) -> str:
    """The migrated database shared by this run's tests."""
    return new_database()


@pytest.fixture(scope="session")
def _session_engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(_session_engine: Engine) -> Engine:
    """An engine on the shared test database, emptied before the test."""
    with _session_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
        conn.execute(sa.text("REFRESH MATERIALIZED VIEW signal_performance"))
    return _session_engine
