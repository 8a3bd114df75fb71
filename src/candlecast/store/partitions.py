"""Monthly partitions of the history tables (``ml_predictions``, ``signal_evaluations``; migration 0012).

Both tables are range-partitioned on ``as_of`` with one partition per UTC calendar month,
``<table>_pYYYYMM``, and a default partition ``<table>_default``. How a new month gets its partition:

- writers call ``ensure_partitions`` with the months they are about to write, in their own transaction, before
  the COPY: a missing month's partition is created there (the first write of a month, or a replay of old
  data). Creating a partition locks the parent table until the writer commits, once per month;
- ``maintain_partitions`` (``candlecast store maintain``, and the daily ``store-maintenance`` job of the
  scheduler) creates the current and the next months ahead, so writers normally find them, and moves rows
  that reached the default partition (written by plain SQL outside the store) into their month's partition.

A month whose rows already sit in the default partition is not created by a writer (Postgres would refuse: the
default partition holds rows of it); those rows stay readable there until ``maintain_partitions`` moves them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import cursor, read_rows

__all__ = [
    "PARTITIONED_TABLES",
    "MaintenanceResult",
    "ensure_partitions",
    "maintain_partitions",
    "month_of",
    "partition_name",
    "partitions",
]

PARTITIONED_TABLES: tuple[str, ...] = ("ml_predictions", "signal_evaluations")
# Serialises partition changes across processes (two writers creating the same month).
_LOCK_KEY = 724_112


def month_of(moment: datetime) -> date:
    """The first day of ``moment``'s month in UTC."""
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def partitions(bind: Engine | Connection, table: str) -> list[str]:
    """The partitions of ``table`` (monthly ones in month order, then the default)."""
    _, rows = read_rows(
        bind,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %(table)s::regclass ORDER BY c.relname",
        {"table": table},
    )
    names = [row[0] for row in rows]
    return sorted(n for n in names if not n.endswith("_default")) + [n for n in names if n.endswith("_default")]


def _check(table: str) -> None:
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"table must be one of {PARTITIONED_TABLES}, found {table!r}")


def ensure_partitions(conn: Connection, table: str, months: Iterable[date]) -> list[str]:
    """Create the missing monthly partitions of ``table`` for ``months`` (first days, UTC) in the caller's
    transaction; returns the partitions created. A month whose rows are already in the default partition is
    left there (``maintain_partitions`` moves them)."""
    _check(table)
    wanted = sorted(set(months))
    created: list[str] = []
    with cursor(conn) as cur:
        cur.execute("SELECT name FROM unnest(%s::text[]) AS n(name) WHERE to_regclass(name) IS NULL",
                    ([partition_name(table, m) for m in wanted],))  # fmt: skip
        missing = {row[0] for row in cur.fetchall()}
        if not missing:
            return created
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for month in wanted:
            name = partition_name(table, month)
            if name not in missing:
                continue
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            if cur.fetchone()[0]:  # type: ignore[index]
                continue  # another writer created it meanwhile
            lo, hi = _bounds(month)
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table}_default WHERE as_of >= %s AND as_of < %s)", (lo, hi))
            if cur.fetchone()[0]:  # type: ignore[index]
                continue
            cur.execute(
                f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
            created.append(name)
    return created


def _bounds(month: date) -> tuple[datetime, datetime]:
    nxt = _next_month(month)
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MaintenanceResult:
    created: list[str]  # partitions created (ahead, or for rows found in a default partition)
    moved: dict[str, int]  # partition -> rows moved into it from the default partition


def maintain_partitions(engine: Engine, now: datetime | None = None, months_ahead: int = 1) -> MaintenanceResult:
    """Create the partitions of the current month and ``months_ahead`` following months of both tables, and move
    rows that reached a default partition into their month's partition. Idempotent.

    Moving detaches the default partition for the duration of one transaction (readers of the table wait that
    long): the rows of each month are copied into a new table, which is attached as the month's partition, and
    deleted from the detached default, which is attached again. The rows move as they are: no trigger of the
    parent fires (a detached partition has none), so no forecast loses its scores or is queued again.
    """
    now = datetime.now(UTC) if now is None else now
    months = [month_of(now)]
    for _ in range(months_ahead):
        months.append(_next_month(months[-1]))
    created: list[str] = []
    moved: dict[str, int] = {}
    for table in PARTITIONED_TABLES:
        with engine.begin() as conn:
            created += ensure_partitions(conn, table, months)
        with engine.begin() as conn, cursor(conn) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute(
                f"SELECT DISTINCT date_trunc('month', as_of AT TIME ZONE 'UTC')::date FROM {table}_default ORDER BY 1"
            )
            stray = [row[0] for row in cur.fetchall()]
            if not stray:
                continue
            cur.execute(f"ALTER TABLE {table} DETACH PARTITION {table}_default")
            for month in stray:
                name = partition_name(table, month)
                lo, hi = _bounds(month)
                cur.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                cur.execute(
                    f"INSERT INTO {name} SELECT * FROM {table}_default WHERE as_of >= %(lo)s AND as_of < %(hi)s",
                    {"lo": lo, "hi": hi},
                )
                moved[name] = cur.rowcount
                cur.execute(
                    f"DELETE FROM {table}_default WHERE as_of >= %(lo)s AND as_of < %(hi)s", {"lo": lo, "hi": hi}
                )
                cur.execute(
                    f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo.isoformat()}') "
                    f"TO ('{hi.isoformat()}')"
                )
                created.append(name)
            cur.execute(f"ALTER TABLE {table} ATTACH PARTITION {table}_default DEFAULT")
    return MaintenanceResult(created, moved)
