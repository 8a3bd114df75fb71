"""Fine-tune adapters (``model_adapters``): one row per trained adapter, at most one promoted per
(asset class, base model).

A row records where the adapter folder is, what it was trained on (``as_of``), its metrics and whether the
promotion gate let it through (``reason`` says why or why not). Promotion is atomic: the previous promoted
adapter is demoted and the new one promoted in one transaction, under a transaction-level advisory lock
per (asset class, base model), so readers never see two promoted adapters or none in between.

The fine-tune job publishes the promoted rows to the model server as a manifest file; ``manifest_lock``
serialises those writes across processes so that the last file written reflects the newest promotions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from candlecast.store._sql import read_rows

__all__ = [
    "AdapterRecord",
    "all_promoted_adapters",
    "get_adapter",
    "insert_adapter",
    "list_adapters",
    "manifest_lock",
    "promote_adapter",
    "promoted_adapter",
    "promoted_adapters",
]

_COLUMNS = "id, asset_class, base_model, path, trained_at, as_of, metrics, promoted, reason"
# First key of the two-key advisory lock form: a namespace for promotions (the second is hashtext(class/base)).
_LOCK_NAMESPACE = 724103


@dataclass(frozen=True)
class AdapterRecord:
    id: int
    asset_class: str
    base_model: str
    path: str
    trained_at: datetime
    as_of: datetime | None
    metrics: dict[str, Any]
    promoted: bool
    reason: str | None


def _records(bind: Engine | Connection, where: str, params: dict[str, Any], tail: str = "") -> list[AdapterRecord]:
    names, rows = read_rows(bind, f"SELECT {_COLUMNS} FROM model_adapters WHERE {where} {tail}", params)
    return [AdapterRecord(**dict(zip(names, row, strict=True))) for row in rows]


def _demote_and_promote(
    conn: Connection, asset_class: str, base_model: str, adapter_id: int, reason: str | None
) -> None:
    key = f"{asset_class}/{base_model}"
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, key))
    conn.exec_driver_sql(
        "UPDATE model_adapters SET promoted = false "
        "WHERE asset_class = %s AND base_model = %s AND promoted AND id <> %s",
        (asset_class, base_model, adapter_id),
    )
    conn.exec_driver_sql(
        "UPDATE model_adapters SET promoted = true, reason = coalesce(%s, reason) WHERE id = %s",
        (reason, adapter_id),
    )


def insert_adapter(
    engine: Engine,
    *,
    asset_class: str,
    base_model: str,
    path: str,
    as_of: datetime | None,
    metrics: dict[str, Any],
    promote: bool,
    reason: str | None,
    trained_at: datetime | None = None,
) -> int:
    """Record a trained adapter and return its id; with ``promote`` it replaces the promoted one atomically."""
    if not asset_class or not base_model:
        raise ValueError("asset_class and base_model must be non-empty")
    sql = (
        "INSERT INTO model_adapters (asset_class, base_model, path, trained_at, as_of, metrics, promoted, reason) "
        "VALUES (%s, %s, %s, coalesce(%s, now()), %s, %s::jsonb, false, %s) RETURNING id"
    )
    with engine.begin() as conn:
        params = (asset_class, base_model, path, trained_at, as_of, json.dumps(metrics), reason)
        adapter_id = int(conn.exec_driver_sql(sql, params).scalar_one())
        if promote:
            _demote_and_promote(conn, asset_class, base_model, adapter_id, None)
    return adapter_id


def promote_adapter(engine: Engine, adapter_id: int, reason: str | None = None) -> AdapterRecord:
    """Make ``adapter_id`` the promoted adapter of its (asset class, base model), demoting the previous one."""
    with engine.begin() as conn:
        found = _records(conn, "id = %(id)s", {"id": adapter_id})
        if not found:
            raise ValueError(f"adapter_id: no model_adapters row with id {adapter_id}")
        _demote_and_promote(conn, found[0].asset_class, found[0].base_model, adapter_id, reason)
    return get_adapter(engine, adapter_id)


def get_adapter(bind: Engine | Connection, adapter_id: int) -> AdapterRecord:
    found = _records(bind, "id = %(id)s", {"id": adapter_id})
    if not found:
        raise ValueError(f"adapter_id: no model_adapters row with id {adapter_id}")
    return found[0]


def promoted_adapter(bind: Engine | Connection, asset_class: str, base_model: str) -> AdapterRecord | None:
    """The promoted adapter of (asset class, base model), or None."""
    found = _records(
        bind, "asset_class = %(ac)s AND base_model = %(base)s AND promoted", {"ac": asset_class, "base": base_model}
    )
    return found[0] if found else None


def promoted_adapters(bind: Engine | Connection, base_model: str) -> dict[str, AdapterRecord]:
    """Every promoted adapter of ``base_model``, by asset class."""
    found = _records(bind, "base_model = %(base)s AND promoted", {"base": base_model}, "ORDER BY asset_class")
    return {r.asset_class: r for r in found}


def all_promoted_adapters(bind: Engine | Connection) -> list[AdapterRecord]:
    """Every promoted adapter of every base model, ordered by base model and asset class."""
    return _records(bind, "promoted", {}, "ORDER BY base_model, asset_class")


@contextmanager
def manifest_lock(engine: Engine) -> Iterator[None]:
    """Hold a session-level advisory lock (waiting for it) while the promoted-adapters manifest is rebuilt
    from the promoted rows and written, so two promotions never write it out of order."""
    key = (_LOCK_NAMESPACE, "promoted-manifest")
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
            conn.commit()


def list_adapters(
    bind: Engine | Connection,
    asset_class: str | None = None,
    base_model: str | None = None,
    limit: int = 50,
) -> list[AdapterRecord]:
    """The newest adapters first, optionally of one asset class and/or base model."""
    where = "(%(ac)s::text IS NULL OR asset_class = %(ac)s) AND (%(base)s::text IS NULL OR base_model = %(base)s)"
    params = {"ac": asset_class, "base": base_model, "limit": limit}
    return _records(bind, where, params, "ORDER BY trained_at DESC, id DESC LIMIT %(limit)s")
