from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.store.candles import Instrument, upsert_instruments
from candlecast.store.predictions import Prediction, latest_prediction, upsert_prediction

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
