"""Small helpers shared by the store modules: borrowing a connection and reading into pandas."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
from sqlalchemy.engine import Connection, Engine

__all__ = ["connection", "cursor", "read_frame", "read_rows"]


class connection:  # noqa: N801 - used like a function: ``with connection(bind) as conn``
    """Use a given Connection as is, or open one from an Engine for the duration of a block."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.owned: Connection | None = None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        self.owned = self.bind.connect()
        return self.owned

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.close()


def cursor(conn: Connection, binary: bool = False) -> psycopg.Cursor[Any]:
    """A psycopg cursor on the connection's own transaction (for COPY and statements SQLAlchemy cannot
    express); use it as a context manager. ``binary`` asks for results in binary format."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection), "the store runs on psycopg 3"
    return raw.cursor(binary=binary)


def read_rows(
    bind: Engine | Connection, sql: str, params: dict[str, Any] | None = None
) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (psycopg ``%(name)s`` parameters) and return column names and rows."""
    with connection(bind) as conn:
        with cursor(conn) as cur:
            cur.execute(sql, params or {})
            columns = [d.name for d in cur.description or []]
            return columns, cur.fetchall()


def read_frame(bind: Engine | Connection, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    columns, rows = read_rows(bind, sql, params)
    return pd.DataFrame(rows, columns=columns)
