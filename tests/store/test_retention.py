"""Retention of sample paths (store.keep_samples_days): old forecasts lose their paths, keep quantiles and scores,
and readers that need paths say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from sqlalchemy.engine import Engine

from candlecast.config import GatewaySettings, Settings, StoreSettings
from candlecast.errors import NotFoundError
from candlecast.gateway.params import PathsParams
from candlecast.gateway.payloads.paths import paths_payload
from candlecast.jobs.ensemble import _usable
from candlecast.jobs.scheduler import run_job
from candlecast.jobs.scoring import run_scoring
from candlecast.store.candles import Instrument, upsert_candles, upsert_instruments
from candlecast.store.ensemble import slot_forecasts
from candlecast.store.evaluations import evaluations_frame, scoring_backlog_ids
from candlecast.store.predictions import Prediction, get_prediction, upsert_predictions
from candlecast.store.retention import prune_samples

H = timedelta(hours=1)
T0 = datetime(2024, 1, 10, tzinfo=UTC)
NOW = datetime(2024, 4, 1, tzinfo=UTC)


def _forecast(as_of: datetime, model: str = "m", k: int = 0) -> Prediction:
    rng = np.random.default_rng(k)
    paths = (100 + rng.normal(0, 1, (4, 2))).astype(np.float32)
    return Prediction(
        symbol="BTCUSDT", timeframe="1h", model_name=model, as_of=as_of, target_ts=[as_of, as_of + H],
        p10=[95, 94], p50=[100, 100], p90=[105, 106], last_close=100.0, samples=paths, samples_high=paths + 1,
        samples_low=paths - 1, p10_raw=[96, 95], p90_raw=[104, 105], calibration={"k": k}, provenance={"seed": k},
    )  # fmt: skip


@pytest.fixture
def history(engine: Engine) -> dict[str, list[int]]:
    """Old forecasts (January, scored), one old forecast with no candles (still in the backlog), and a recent one."""
    old = [T0 + k * 6 * H for k in range(5)]
    orphan = T0 + 10 * 24 * H  # no candles after it: stays in the scoring backlog
    recent = NOW - 24 * H
    with engine.begin() as conn:
        upsert_instruments(conn, [Instrument("BTCUSDT", "crypto")])
        ts = pd.date_range(T0 - H, old[-1] + 2 * H, freq="h")
        upsert_candles(conn, "BTCUSDT", "1h", pd.DataFrame({"ts": ts, "close": 100 + np.sin(np.arange(len(ts)))}))
        ids = upsert_predictions(conn, [_forecast(t, k=k) for k, t in enumerate(old)])
        ids += upsert_predictions(conn, [_forecast(t, "n", k) for k, t in enumerate(old)])  # a second model
        (orphan_id,) = upsert_predictions(conn, [_forecast(orphan, k=9)])
        (recent_id,) = upsert_predictions(conn, [_forecast(recent, k=10)])
    run_scoring(Settings(), engine, "1h", as_of=old[-1] + 3 * H, refresh=False, record=False)
    return {"old": ids, "orphan": [orphan_id], "recent": [recent_id]}


def test_prune_drops_old_paths_and_keeps_quantiles_scores_and_the_backlog(
    engine: Engine, history: dict[str, list[int]], db_url: str
) -> None:
    before = {pid: get_prediction(engine, pid, with_samples=True) for ids in history.values() for pid in ids}
    scores = evaluations_frame(engine)
    backlog = scoring_backlog_ids(engine)
    assert len(scores) == 2 * len(history["old"]) and backlog == history["orphan"] + history["recent"]

    with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as listener:
        listener.execute("LISTEN ml_predictions")
        result = prune_samples(engine, keep_days=30, now=NOW, batch_rows=3)
        heard = list(listener.notifies(timeout=0.5))
    assert (result.pruned, result.batches) == (len(history["old"]), 4)  # 10 rows in batches of 3
    assert heard == []  # no gateway is told to drop anything: no number changed

    for pid, was in before.items():
        now = get_prediction(engine, pid, with_samples=True)
        assert now is not None and was is not None
        if pid in history["old"]:
            assert now.samples is None and now.samples_high is None and now.samples_low is None
            assert now.samples_dropped_at is not None
        else:  # recent, or not scored yet: kept
            assert now.samples is not None and np.array_equal(now.samples, was.samples)  # type: ignore[arg-type]
            assert now.samples_dropped_at is None
        for name in ("p10", "p50", "p90", "p10_raw", "p90_raw"):
            assert np.array_equal(getattr(now, name), getattr(was, name))
        kept = (now.calibration, now.provenance, now.generated_at)
        assert kept == (was.calibration, was.provenance, was.generated_at)
    pd.testing.assert_frame_equal(evaluations_frame(engine), scores)
    assert scoring_backlog_ids(engine) == backlog  # pruned forecasts were not queued for scoring again

    assert prune_samples(engine, keep_days=30, now=NOW).pruned == 0  # idempotent


def test_readers_that_need_paths_say_they_were_dropped(engine: Engine, history: dict[str, list[int]]) -> None:
    prune_samples(engine, keep_days=30, now=NOW)
    pid = history["old"][0]
    with pytest.raises(NotFoundError, match="samples dropped by retention"):
        paths_payload(engine, PathsParams("BTCUSDT", None, None, pid), GatewaySettings())
    members = slot_forecasts(engine, "1h", T0, ["m", "n"])
    present, excluded = _usable(members, ["m", "n"])
    assert present == [] and excluded == {"m": "samples dropped by retention", "n": "samples dropped by retention"}

    # the recent forecast still answers
    assert paths_payload(engine, PathsParams("BTCUSDT", None, None, history["recent"][0]), GatewaySettings())["samples"]

    # rewriting the slot brings new paths and clears the stamp
    with engine.begin() as conn:
        upsert_predictions(conn, [_forecast(T0, k=0)])
    again = get_prediction(engine, pid, with_samples=True)
    assert again is not None and again.samples is not None and again.samples_dropped_at is None


def test_the_maintenance_job_prunes_with_the_setting(engine: Engine, history: dict[str, list[int]]) -> None:
    settings = Settings(store=StoreSettings(keep_samples_days=30, prune_batch_rows=4))
    outcome = run_job(settings, engine, "store-maintenance", as_of=NOW)
    assert outcome.action == "ran" and outcome.status == "ok"
    assert outcome.result.prune.pruned == len(history["old"])
    off = run_job(Settings(), engine, "store-maintenance", as_of=NOW)
    assert off.result.prune is None  # retention off by default
    with pytest.raises(ValueError, match="keep_samples_days must be >= 0"):
        prune_samples(engine, keep_days=-1)
