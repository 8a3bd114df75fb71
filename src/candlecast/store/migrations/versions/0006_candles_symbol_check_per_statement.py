"""Candles: check that their instrument exists once per statement instead of once per row.

Measured with bench/ingest.py (1,000,000 hourly candles, binary COPY, idle machine): the foreign key
``ohlcv_*.symbol -> instruments`` cost 3.5 s of a 5.8 s COPY (one referential lookup per row). It is
replaced by statement-level triggers over the transition table, which check each distinct symbol once,
so the guarantee stays:

- a statement that writes candles of an unknown symbol fails (SQLSTATE 23503, as the foreign key did);
- deleting an instrument deletes its candles, as ON DELETE CASCADE did (TRUNCATE of instruments already
  needed CASCADE, which now no longer reaches the candle tables: the store never truncates instruments).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("ohlcv_1h", "ohlcv_1d")


def upgrade() -> None:
    op.execute("""
    CREATE FUNCTION candles_need_instruments() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unknown text;
    BEGIN
        SELECT n.symbol INTO unknown FROM (SELECT DISTINCT symbol FROM new_rows) n
        WHERE NOT EXISTS (SELECT 1 FROM instruments i WHERE i.symbol = n.symbol) LIMIT 1;
        IF unknown IS NOT NULL THEN
            RAISE EXCEPTION 'candles in % for unknown instrument %', TG_TABLE_NAME, unknown
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END $$""")
    op.execute("""
    CREATE FUNCTION delete_instrument_candles() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM ohlcv_1h WHERE symbol = OLD.symbol;
        DELETE FROM ohlcv_1d WHERE symbol = OLD.symbol;
        RETURN OLD;
    END $$""")
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_symbol_fkey")
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER trg_{table}_instruments_{event.lower()} AFTER {event} ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION candles_need_instruments()"
            )
    op.execute(
        "CREATE TRIGGER trg_instruments_delete_candles AFTER DELETE ON instruments "
        "FOR EACH ROW EXECUTE FUNCTION delete_instrument_candles()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS trg_instruments_delete_candles ON instruments")
    for table in _TABLES:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_instruments_{event} ON {table}")
        op.execute(f"DELETE FROM {table} c WHERE NOT EXISTS (SELECT 1 FROM instruments i WHERE i.symbol = c.symbol)")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_symbol_fkey "
            "FOREIGN KEY (symbol) REFERENCES instruments(symbol) ON DELETE CASCADE"
        )
    op.execute("DROP FUNCTION IF EXISTS delete_instrument_candles()")
    op.execute("DROP FUNCTION IF EXISTS candles_need_instruments()")
