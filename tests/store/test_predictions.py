import json
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store.candles import Instrument, upsert_instruments
from candlecast.store.predictions import Prediction, latest_prediction, upsert_prediction, upsert_predictions

AS_OF = datetime(2020, 1, 2, tzinfo=UTC)


def forecast(as_of: datetime = AS_OF, level: float = 100.0, n: int = 4) -> Prediction:
    targets = [as_of + timedelta(hours=h) for h in range(n)]
    samples = level + np.arange(3 * n, dtype=np.float32).reshape(3, n)
    return Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name="baseline", as_of=as_of, target_ts=targets,
        p10=samples.min(0), p50=np.median(samples, 0), p90=samples.max(0), last_close=level,
        samples=samples, model_version="v1", event_context={"events": False},
    )  # fmt: skip


@pytest.fixture
def store(engine: Engine) -> Engine:
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
    return engine


def test_rewriting_a_slot_replaces_it_instead_of_duplicating(store: Engine) -> None:
    with store.begin() as conn:
        first = upsert_prediction(conn, forecast(level=100))
    with store.begin() as conn:
        second = upsert_prediction(conn, forecast(level=200))
    assert first == second
    with store.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml_predictions")).scalar() == 1
    got = latest_prediction(store, "BTCUSDT", "baseline", "1h", with_samples=True)
    assert got is not None and got.last_close == 200
    assert got.samples is not None and got.samples.shape == (3, 4)
    assert got.event_context == {"events": False}


def test_latest_prediction_is_the_newest_slot_or_the_newest_by_as_of(store: Engine) -> None:
    with store.begin() as conn:
        for hours in (0, 1, 2):
            upsert_prediction(conn, forecast(AS_OF + timedelta(hours=hours), level=100 + hours))
    newest = latest_prediction(store, "BTCUSDT", "baseline", "1h")
    assert newest is not None and newest.last_close == 102 and newest.samples is None
    earlier = latest_prediction(store, "BTCUSDT", "baseline", "1h", as_of=AS_OF + timedelta(minutes=90))
    assert earlier is not None and earlier.last_close == 101


def test_prediction_with_mismatched_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="p10/p50/p90"):
        Prediction("BTCUSDT", "1h", "baseline", AS_OF, [AS_OF], [1, 2], [1], [1], 1.0)


def _symbols(store: Engine, *symbols: str) -> None:
    with store.begin() as conn:
        upsert_instruments(conn, [Instrument(s, "crypto") for s in symbols])


def _rows(store: Engine) -> list[tuple]:
    with store.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT id, symbol, as_of FROM ml_predictions ORDER BY id"))]


def test_many_forecasts_written_at_once_read_back_as_written(store: Engine) -> None:
    _symbols(store, "ETHUSDT", "SOLUSDT")
    plain = forecast(level=100)
    odd = forecast(level=200, n=6)  # another horizon in the same write
    odd.symbol, odd.samples, odd.event_context = "ETHUSDT", None, None
    odd.p90[2] = np.nan  # stored as NaN, as a single write stores it
    wide = forecast(level=300)
    wide.symbol, wide.model_version = "SOLUSDT", "v2 ünïcode"
    wide.samples = np.random.default_rng(0).normal(300, 5, (32, 4)).astype(np.float32)
    wide.event_context = {"events": True, "active_channels": [1, 14], "note": "ünïcode"}
    with store.begin() as conn:
        ids = upsert_predictions(conn, [plain, odd, wide])
    assert len(set(ids)) == 3
    for written, row_id in zip((plain, odd, wide), ids, strict=True):
        got = latest_prediction(store, written.symbol, "baseline", "1h", with_samples=True)
        assert got is not None and got.id == row_id
        assert got.target_ts == written.target_ts and got.last_close == written.last_close
        assert got.model_version == written.model_version and got.event_context == written.event_context
        for name in ("p10", "p50", "p90"):
            np.testing.assert_array_equal(getattr(got, name), getattr(written, name))
        if written.samples is None:
            assert got.samples is None
        else:
            np.testing.assert_array_equal(got.samples, written.samples)


def test_writing_many_again_replaces_each_slot_and_keeps_its_id(store: Engine) -> None:
    _symbols(store, "ETHUSDT")
    first = [forecast(AS_OF + timedelta(hours=h), level=100 + h) for h in range(3)]
    with store.begin() as conn:
        ids = upsert_predictions(conn, first)
    again = [forecast(AS_OF + timedelta(hours=h), level=500 + h) for h in (1, 2)]
    eth = forecast(AS_OF, level=7)
    eth.symbol = "ETHUSDT"
    with store.begin() as conn:
        assert upsert_predictions(conn, [*again, eth])[:2] == ids[1:]
    assert len(_rows(store)) == 4  # three slots of BTCUSDT, one of ETHUSDT: nothing duplicated
    newest = latest_prediction(store, "BTCUSDT", "baseline", "1h")
    assert newest is not None and newest.last_close == 502
    untouched = latest_prediction(store, "BTCUSDT", "baseline", "1h", as_of=AS_OF)
    assert untouched is not None and untouched.last_close == 100


def test_the_same_slot_twice_in_one_write_keeps_the_later_forecast(store: Engine) -> None:
    with store.begin() as conn:
        ids = upsert_predictions(conn, [forecast(level=1), forecast(level=2)])
    assert ids[0] == ids[1] and len(_rows(store)) == 1
    got = latest_prediction(store, "BTCUSDT", "baseline", "1h")
    assert got is not None and got.last_close == 2


def test_a_refused_write_writes_none_of_its_forecasts(store: Engine) -> None:
    unknown = forecast(level=3)
    unknown.symbol = "NOTLISTED"  # no such instrument: the foreign key refuses it
    with pytest.raises(psycopg.errors.ForeignKeyViolation), store.begin() as conn:
        upsert_predictions(conn, [forecast(level=1), unknown])
    assert _rows(store) == []
    with store.begin() as conn:  # the staging table is clean for the next write on the same connection
        upsert_predictions(conn, [forecast(level=1)])
    assert len(_rows(store)) == 1


def test_every_row_of_a_write_notifies_the_gateway_channel(store: Engine, db_url: str) -> None:
    _symbols(store, "ETHUSDT", "SOLUSDT")
    batch = []
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        p = forecast()
        p.symbol = symbol
        batch.append(p)
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN ml_predictions")
        with store.begin() as conn:
            ids = upsert_predictions(conn, batch)
        with store.begin() as conn:  # a rewrite notifies again
            upsert_predictions(conn, batch[:1])
        messages = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=4)]
    assert [(m["id"], m["symbol"]) for m in messages] == [*zip(ids, ("BTCUSDT", "ETHUSDT", "SOLUSDT"), strict=True),
                                                          (ids[0], "BTCUSDT")]  # fmt: skip
    assert {(m["timeframe"], m["model_name"]) for m in messages} == {("1h", "baseline")}
