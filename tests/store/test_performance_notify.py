"""Rebuilding the performance table tells the gateway: every cached answer carries a track record."""

from __future__ import annotations

import json

import psycopg
from sqlalchemy.engine import Engine

from candlecast.store.performance import lock_performance, replace_performance


def test_replacing_performance_notifies_listeners_at_commit(engine: Engine, db_url: str) -> None:
    listener_url = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(listener_url, autocommit=True) as listener:
        listener.execute("LISTEN ml_predictions")
        with engine.begin() as conn:
            lock_performance(conn)
            replace_performance(conn, "1h", [], None)
        received = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    assert received == [{"performance": "1h"}]
