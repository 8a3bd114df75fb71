"""Instruments and candles: registration, bulk upsert, and as-of reads.

A candle is stamped with its open time ``ts`` and covers ``[ts, ts + timeframe)``. "As of T" means
what was knowable at T, so a read as of T returns only candles that had *closed* by T:
``ts + timeframe <= T``. Every job passes its ``as_of`` down to here, which is what makes a
historical replay free of look-ahead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from candlecast.store._copy import binary_copy
from candlecast.store._sql import connection, cursor, read_frame
from candlecast.store.schema import CANDLE_COLUMNS, TIMEFRAMES, candle_table, instruments

__all__ = [
    "Instrument",
    "InstrumentSummary",
    "candles_between",
    "closed_cutoff",
    "get_instruments",
    "latest_candles",
    "latest_candles_many",
    "list_instruments",
    "realised_candles",
    "timeframe_delta",
    "upsert_candles",
    "upsert_instruments",
]


@dataclass(frozen=True)
class Instrument:
    symbol: str
    asset_class: str
    name: str | None = None
    source: str | None = None
    quote_currency: str | None = None
    bar_kind: str = "ohlc"  # 'ohlc', or 'close' for sources that publish only a close
    active: bool = True


@dataclass(frozen=True)
class InstrumentSummary:
    instrument: Instrument
    rows_1h: int
    rows_1d: int
    first_1h: datetime | None
    last_1h: datetime | None
    first_1d: datetime | None
    last_1d: datetime | None


def timeframe_delta(timeframe: str) -> timedelta:
    if timeframe not in TIMEFRAMES:
        raise ValueError(f"timeframe must be one of {TIMEFRAMES}, found {timeframe!r}")
    return timedelta(hours=1) if timeframe == "1h" else timedelta(days=1)


def closed_cutoff(timeframe: str, as_of: datetime) -> datetime:
    """The latest candle open time that had closed by ``as_of``."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    return as_of - timeframe_delta(timeframe)


def upsert_instruments(conn: Connection, rows: Iterable[Instrument], update: bool = True) -> int:
    """Insert instruments by symbol; existing ones are updated, or left as they are if not ``update``."""
    values = [row.__dict__ for row in rows]
    if not values:
        return 0
    stmt = sa.dialects.postgresql.insert(instruments).values(values)
    if not update:
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["symbol"]))
        return len(values)
    changes = {c: stmt.excluded[c] for c in values[0] if c != "symbol"}
    conn.execute(stmt.on_conflict_do_update(index_elements=["symbol"], set_=changes))
    return len(values)


def list_instruments(engine: Engine | Connection, active_only: bool = False) -> list[InstrumentSummary]:
    """Every instrument with its candle counts and date ranges per timeframe."""
    where = "WHERE i.active" if active_only else ""
    sql = f"""
        SELECT i.symbol, i.asset_class, i.name, i.source, i.quote_currency, i.bar_kind, i.active,
               h.n, h.first, h.last, d.n, d.first, d.last
        FROM instruments i
        LEFT JOIN (SELECT symbol, count(*) n, min(ts) first, max(ts) last FROM ohlcv_1h GROUP BY symbol) h
               USING (symbol)
        LEFT JOIN (SELECT symbol, count(*) n, min(ts) first, max(ts) last FROM ohlcv_1d GROUP BY symbol) d
               USING (symbol)
        {where}
        ORDER BY i.asset_class, i.symbol"""
    with connection(engine) as conn:
        rows = conn.exec_driver_sql(sql).all()
    return [InstrumentSummary(Instrument(*r[:7]), r[7] or 0, r[10] or 0, r[8], r[9], r[11], r[12]) for r in rows]


def get_instruments(
    bind: Engine | Connection, symbols: Sequence[str] | None = None, active_only: bool = False
) -> list[Instrument]:
    """Instruments by symbol (all, or those named), without the candle statistics of ``list_instruments``."""
    sql = (
        "SELECT symbol, asset_class, name, source, quote_currency, bar_kind, active FROM instruments "
        "WHERE (%(symbols)s::text[] IS NULL OR symbol = ANY(%(symbols)s)) AND (active OR NOT %(active_only)s) "
        "ORDER BY symbol"
    )
    with connection(bind) as conn:
        params = {"symbols": None if symbols is None else list(symbols), "active_only": active_only}
        rows = conn.exec_driver_sql(sql, params).all()
    return [Instrument(*row) for row in rows]


def upsert_candles(conn: Connection, symbol: str, timeframe: str, frame: pd.DataFrame) -> int:
    """Insert or replace candles of one symbol, in the caller's transaction.

    ``frame`` has a tz-aware ``ts`` column (or index) and the columns of ``CANDLE_COLUMNS``;
    open/high/low/volume/amount may be NaN (stored as NULL). Rows are streamed with binary COPY:
    straight into the table when none of them exists yet, else into a
    temporary table followed by one ``INSERT ... ON CONFLICT DO UPDATE``, so re-loading a file is
    idempotent. The table's CHECK constraints are the last line of defence; ingest validates first.
    """
    table = candle_table(timeframe).name
    frame = _with_ts_column(frame)
    if frame.empty:
        return 0
    n = len(frame)
    columns: list[tuple[str, str, np.ndarray | pd.Series]] = [
        ("symbol", "text", np.full(n, symbol.encode(), dtype=f"S{len(symbol.encode())}")),
        ("ts", "timestamptz", frame["ts"]),
    ]
    for column in CANDLE_COLUMNS:  # NaN (missing open/high/low, volume, amount) is written as NULL
        values = frame[column].to_numpy(dtype="float64") if column in frame else np.full(n, np.nan)
        columns.append((column, ">f8", values))
    body = binary_copy(columns)
    names = ", ".join(name for name, _, _ in columns)
    with cursor(conn) as cur:
        cur.execute(
            f"SELECT EXISTS (SELECT 1 FROM {table} WHERE symbol = %s AND ts BETWEEN %s AND %s)",
            (symbol, frame["ts"].min(), frame["ts"].max()),
        )
        overlaps = bool(cur.fetchone()[0])  # type: ignore[index]
        target = f"_stage_{table}" if overlaps else table
        if overlaps:
            cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {target} (LIKE {table}) ON COMMIT DELETE ROWS")
            cur.execute(f"TRUNCATE {target}")
        with cur.copy(f"COPY {target} ({names}) FROM STDIN WITH (FORMAT binary)") as copy:
            copy.write(body)
        if overlaps:
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in CANDLE_COLUMNS)
            cur.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} "
                f"ON CONFLICT (symbol, ts) DO UPDATE SET {updates}"
            )
    return len(frame)


def latest_candles(engine: Engine | Connection, symbol: str, timeframe: str, n: int, as_of: datetime) -> pd.DataFrame:
    """The last ``n`` candles of ``symbol`` that had closed by ``as_of``, oldest first."""
    return latest_candles_many(engine, [symbol], timeframe, n, as_of).get(symbol, _empty_candles())


def latest_candles_many(
    engine: Engine | Connection, symbols: Sequence[str], timeframe: str, n: int, as_of: datetime
) -> dict[str, pd.DataFrame]:
    """``latest_candles`` for many symbols in one round trip; symbols without candles are absent."""
    table = candle_table(timeframe).name
    sql = f"""
        SELECT s.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume, c.amount
        FROM unnest(%(symbols)s::text[]) AS s(symbol)
        CROSS JOIN LATERAL (
            SELECT * FROM {table} t WHERE t.symbol = s.symbol AND t.ts <= %(cutoff)s
            ORDER BY t.ts DESC LIMIT %(n)s) c
        ORDER BY s.symbol, c.ts"""
    params = {"symbols": list(symbols), "cutoff": closed_cutoff(timeframe, as_of), "n": n}
    frame = _typed(read_frame(engine, sql, params))
    return {str(sym): part.drop(columns="symbol").reset_index(drop=True) for sym, part in frame.groupby("symbol")}


def candles_covering(
    engine: Engine | Connection, symbol: str, timeframe: str, n: int, first_as_of: datetime, last_as_of: datetime
) -> pd.DataFrame:
    """Every candle that ``latest_candles(symbol, timeframe, k, as_of)`` reads for any ``k <= n`` and any
    ``first_as_of <= as_of <= last_as_of``, oldest first, in one round trip: the candles that closed between the
    two cutoffs plus the ``n`` before the first. Slice a window with ``window_before``."""
    table = candle_table(timeframe).name
    sql = f"""
        SELECT ts, open, high, low, close, volume, amount FROM (
            SELECT * FROM {table} WHERE symbol = %(symbol)s AND ts <= %(last)s ORDER BY ts DESC
            LIMIT %(n)s + (SELECT count(*) FROM {table}
                           WHERE symbol = %(symbol)s AND ts > %(first)s AND ts <= %(last)s)) c
        ORDER BY ts"""
    params = {
        "symbol": symbol,
        "n": n,
        "first": closed_cutoff(timeframe, first_as_of),
        "last": closed_cutoff(timeframe, last_as_of),
    }
    return _typed(read_frame(engine, sql, params))


def window_before(stamps: pd.DatetimeIndex, timeframe: str, n: int, as_of: datetime) -> slice:
    """Where, in the (sorted) candle times ``stamps`` of a ``candles_covering`` read, ``latest_candles`` with ``n``
    and ``as_of`` would read: the last ``n`` candles closed by ``as_of``."""
    end = int(stamps.searchsorted(pd.Timestamp(closed_cutoff(timeframe, as_of)), side="right"))
    return slice(max(0, end - n), end)


def candles_between(
    engine: Engine | Connection, symbol: str, timeframe: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """Candles of ``symbol`` with ``start <= ts <= end``, oldest first."""
    table = candle_table(timeframe).name
    sql = (
        f"SELECT ts, open, high, low, close, volume, amount FROM {table} "
        "WHERE symbol = %(symbol)s AND ts BETWEEN %(start)s AND %(end)s ORDER BY ts"
    )
    return _typed(read_frame(engine, sql, {"symbol": symbol, "start": start, "end": end}))


def realised_candles(
    engine: Engine | Connection, symbol: str, timeframe: str, as_of: datetime, until: datetime, limit: int = 1000
) -> pd.DataFrame:
    """The candles of ``symbol`` that had not closed by ``as_of`` (``ts + timeframe > as_of``), up to the one
    stamped ``until``, oldest first: what happened after a forecast made as of ``as_of``."""
    table = candle_table(timeframe).name
    sql = (
        f"SELECT ts, open, high, low, close, volume, amount FROM {table} "
        "WHERE symbol = %(symbol)s AND ts > %(cutoff)s AND ts <= %(until)s ORDER BY ts LIMIT %(limit)s"
    )
    params = {"symbol": symbol, "cutoff": closed_cutoff(timeframe, as_of), "until": until, "limit": limit}
    return _typed(read_frame(engine, sql, params))


# -- helpers ---------------------------------------------------------------------------------------


def _empty_candles() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS})
    frame.insert(0, "ts", pd.Series(dtype="datetime64[ns, UTC]"))
    return frame


def _with_ts_column(frame: pd.DataFrame) -> pd.DataFrame:
    if "ts" not in frame.columns:
        frame = frame.rename_axis("ts").reset_index()
    ts = pd.to_datetime(frame["ts"])
    if ts.dt.tz is None:
        raise ValueError("candle timestamps must be timezone-aware")
    return frame.assign(ts=ts.dt.tz_convert("UTC"))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    if "ts" in frame:
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for column in CANDLE_COLUMNS:
        if column in frame:
            frame[column] = frame[column].astype("float64")
    return frame
