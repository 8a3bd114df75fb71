import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store import create_engine_for, current_revision, head_revision, upgrade
from candlecast.store.migrate import downgrade
from candlecast.store.schema import metadata


def test_upgrade_twice_is_a_no_op_and_reaches_head(db_url: str) -> None:
    engine = create_engine_for(db_url)
    upgrade(engine)
    assert current_revision(engine) == head_revision() is not None
    engine.dispose()


def test_query_tables_match_the_migrated_database(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    relations = set(inspector.get_table_names()) | set(inspector.get_materialized_view_names())
    for table in metadata.sorted_tables:
        assert table.name in relations
        reflected = {c["name"] for c in inspector.get_columns(table.name)}
        assert reflected == set(table.columns.keys()), table.name


BAD_CANDLES = [
    # (open, high, low, close, volume, reason)
    (10, 9, 11, 10, 1, "high below low"),
    (12, 11, 9, 10, 1, "open above high"),
    (10, 11, 9, 8, 1, "close below low"),
    (10, 11, 9, 10, -1, "negative volume"),
    (10, "NaN", 9, 10, 1, "NaN high"),
    (10, 11, 9, "Infinity", 1, "infinite close"),
    (None, 11, 9, 10, 1, "half a candle (no open)"),
]


@pytest.mark.parametrize(("o", "h", "low", "c", "v", "reason"), BAD_CANDLES, ids=[b[-1] for b in BAD_CANDLES])
def test_constraints_reject_impossible_candles(engine: Engine, o, h, low, c, v, reason) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('BTCUSDT', 'crypto')"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ohlcv_1h (symbol, ts, open, high, low, close, volume) "
                "VALUES ('BTCUSDT', '2020-01-01T00:00Z', CAST(:o AS float8), CAST(:h AS float8), "
                "CAST(:l AS float8), CAST(:c AS float8), :v)"
            ),
            {"o": o, "h": h, "l": low, "c": c, "v": v},
        )


def test_candles_off_the_timeframe_grid_are_rejected(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('SPY', 'equity')"))
    for table, ts in (("ohlcv_1h", "2020-01-01T00:30Z"), ("ohlcv_1d", "2020-01-01T05:00Z")):
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} (symbol, ts, close) VALUES ('SPY', '{ts}', 1)"))


def test_close_only_bars_are_accepted(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO instruments (symbol, asset_class, bar_kind) VALUES ('VIX','index','close')"))
        conn.execute(sa.text("INSERT INTO ohlcv_1d (symbol, ts, close) VALUES ('VIX', '2018-01-02T00:00Z', 9.77)"))
        assert conn.execute(sa.text("SELECT count(*) FROM ohlcv_1d")).scalar() == 1


def test_candles_of_an_unknown_instrument_are_refused_whole(engine: Engine) -> None:
    from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments

    frame = pd.DataFrame({"ts": pd.date_range("2020-01-01", periods=3, freq="h", tz="UTC"), "close": 1.0})
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown instrument NOPE"), engine.begin() as conn:
        upsert_candles(conn, "NOPE", "1h", frame)
    with engine.begin() as conn:  # the staging path (rows already exist) checks too
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        upsert_candles(conn, "BTCUSDT", "1h", frame)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE ohlcv_1h SET symbol = 'NOPE'"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ohlcv_1h WHERE symbol = 'BTCUSDT'")).scalar() == 3


def test_deleting_an_instrument_deletes_its_candles(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO instruments (symbol, asset_class) VALUES ('SPY', 'equity'), ('QQQ', 'equity')")
        )
        for symbol in ("SPY", "QQQ"):
            conn.execute(sa.text(f"INSERT INTO ohlcv_1d (symbol, ts, close) VALUES ('{symbol}', '2020-01-02Z', 1)"))
        conn.execute(sa.text("DELETE FROM instruments WHERE symbol = 'SPY'"))
        assert conn.execute(sa.text("SELECT array_agg(symbol) FROM ohlcv_1d")).scalar() == ["QQQ"]


def test_every_migration_downgrades_and_upgrades_again(new_database: Callable[[], str]) -> None:
    engine = create_engine_for(new_database())
    downgrade(engine, "base")
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_processes_that_died_are_forgotten_by_the_embedded_server(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from candlecast.store.db import prune_dead_handles

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([os.getpid(), int(dead.stdout)]))
    prune_dead_handles(tmp_path)
    assert json.loads(handles.read_text()) == [os.getpid()]
