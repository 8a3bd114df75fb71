"""Shared fixtures: a real PostgreSQL for the whole run, one fresh database per test session.

The server is, in order: ``CANDLECAST_TEST_DATABASE_URL``; the local server at 127.0.0.1:5432;
else a private embedded PostgreSQL started for the run. Each run creates its own database
(``candlecast_test_<random>``), migrates it, and drops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store import create_engine_for
from candlecast.store.db import LOCAL_SERVER_URL, embedded_postgres_url, temporary_database

FIXTURES = Path(__file__).parent / "fixtures"
_TABLES = (
    "signal_evaluations, path_evaluations, path_performance, signal_performance, scoring_backlog, scoring_state, "
    "ml_predictions, ohlcv_1h, ohlcv_1d, economic_calendar, central_bank_rates, job_runs, model_adapters, instruments, "
    "performance_state, performance_summaries, performance_changes"
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
        return LOCAL_SERVER_URL
    return embedded_postgres_url(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def new_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, migrated databases on the test server; all are dropped at the end."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(temporary_database(pg_server_url, prefix="candlecast_test"))


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
    return _session_engine
