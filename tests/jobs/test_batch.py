"""The batch job against a real inference service (uvicorn in a child process) and real Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.jobs.batch import run_batch, slot_time
from candlecast.jobs.scoring import run_scoring
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.jobs import recent_job_runs, running_runs
from candlecast.store.performance import performance
from candlecast.store.predictions import latest_prediction

from .conftest import InferenceProcess, job_settings, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday; 120 hourly candles run to Tuesday 23:00
H = timedelta(hours=1)


def slot_rows(engine: Engine) -> list[tuple[str, datetime]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT symbol, as_of FROM ml_predictions ORDER BY symbol, as_of")).all()
    return [tuple(r) for r in rows]


def test_slot_time_truncates_to_the_timeframe_grid() -> None:
    assert slot_time(datetime(2024, 3, 4, 12, 55, tzinfo=UTC), "1h") == datetime(2024, 3, 4, 12, tzinfo=UTC)
    assert slot_time(datetime(2024, 3, 4, 5, 45, tzinfo=UTC), "1d") == datetime(2024, 3, 4, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        slot_time(datetime(2024, 3, 4, 12, 55), "1h")


def test_forecasts_scores_and_performance_end_to_end(engine: Engine, inference: InferenceProcess) -> None:
    frames = load_market(engine, ["BTCUSDT", "ETHUSDT", "EURUSD"], START, 120)
    settings = job_settings(inference.url)  # pred_len 4, context 64, 16 samples
    slot = datetime(2024, 3, 4, 10, tzinfo=UTC)  # a Monday: FX is open

    first = run_batch(settings, engine, "1h", "baseline", as_of=slot + timedelta(minutes=20), progress=False)
    second = run_batch(settings, engine, "1h", "baseline", as_of=slot + H, progress=False)
    assert first.ok == second.ok == ("BTCUSDT", "ETHUSDT", "EURUSD") and first.status == "ok"
    assert first.as_of == slot and first.exit_code == 0

    btc = latest_prediction(engine, "BTCUSDT", "baseline", "1h", with_samples=True, as_of=slot)
    assert btc is not None and btc.as_of == slot
    closes = frames["BTCUSDT"].set_index("ts")["close"]
    assert btc.last_close == closes[slot - H]  # the newest candle closed by 10:00 opened at 09:00
    assert btc.target_ts == [slot + h * H for h in range(4)]
    assert btc.samples is not None and btc.samples.shape == (16, 4)
    assert btc.event_context["events"] is False and btc.event_context["context_candles"] == 64

    # as of 12:00 the 10:00 and 11:00 candles have closed: steps 1-2 of the first slot, step 1 of the second
    assert run_scoring(settings, engine, "1h", as_of=slot + 2 * H).steps_scored == 3 * 3
    assert run_scoring(settings, engine, "1h", as_of=slot + 6 * H).steps_scored == 3 * 5
    scored = evaluations_frame(engine)
    assert len(scored) == 3 * 8

    for symbol in ("BTCUSDT", "ETHUSDT", "EURUSD"):
        closes = frames[symbol].set_index("ts")["close"]
        expected = []
        for as_of in (slot, slot + H):
            p = latest_prediction(engine, symbol, "baseline", "1h", with_samples=True, as_of=as_of)
            assert p is not None and p.samples is not None
            for h, target in enumerate(p.target_ts):
                y, c0 = float(closes[pd.Timestamp(target)]), p.last_close
                x = p.samples[:, h].astype(float).tolist()
                # the fair CRPS by its definition, mean|X_i - y| - sum_{i != j}|X_i - X_j| / (2 M (M - 1)), with plain
                # loops (the i == j terms are 0)
                m = len(x)
                crps = sum(abs(a - y) for a in x) / m - sum(abs(a - b) for a in x for b in x) / (2 * m * (m - 1))
                up = np.sign(p.p50[h] - c0)
                expected.append({
                    "prediction_id": p.id, "step": h + 1, "direction_hit": up == np.sign(y - c0),
                    "in_band": p.p10[h] <= y <= p.p90[h], "crps": crps,
                    "pinball_50": 0.5 * abs(y - p.p50[h]), "strategy_return": up * (y / c0 - 1),
                })  # fmt: skip
        got = scored[scored.symbol == symbol].to_dict("records")
        assert len(got) == len(expected) == 8
        for g, e in zip(got, expected, strict=True):
            assert (g["prediction_id"], g["step"], g["direction_hit"], g["in_band"]) == (
                e["prediction_id"], e["step"], e["direction_hit"], e["in_band"],
            )  # fmt: skip
            assert g["crps"] == pytest.approx(e["crps"], rel=1e-6)
            assert g["pinball_50"] == pytest.approx(e["pinball_50"])
            assert g["strategy_return"] == pytest.approx(e["strategy_return"])

        (row,) = performance(engine, symbol=symbol, model_name="baseline", timeframe="1h", window="all")
        assert (row.n_predictions, row.n_steps) == (2, 8)
        assert row.hit_rate == pytest.approx(np.mean([e["direction_hit"] for e in expected]))
        assert row.coverage == pytest.approx(np.mean([e["in_band"] for e in expected]))
        assert row.mean_crps == pytest.approx(np.mean([e["crps"] for e in expected]), rel=1e-6)
        step1 = np.array([e["strategy_return"] for e in expected if e["step"] == 1])
        if step1.std() > 0:
            assert row.sharpe == pytest.approx(step1.mean() / step1.std(ddof=1) * np.sqrt(8760), rel=1e-6)

    runs = recent_job_runs(engine)
    assert [r.job_name for r in runs[:2]] == ["score-signals-1h"] * 2
    batch_run = runs[-1]
    assert batch_run.job_name == "batch-baseline-1h" and batch_run.status == "ok"
    assert batch_run.counts["ok"] == 3 and batch_run.counts["failed"] == 0 and batch_run.as_of == slot


def test_in_process_forecasts_equal_the_service_forecasts(engine: Engine, inference: InferenceProcess) -> None:
    load_market(engine, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], START, 120)
    as_of = datetime(2024, 3, 4, 10, tzinfo=UTC)
    run_batch(job_settings(inference.url), engine, "1h", "baseline", as_of=as_of, progress=False)
    remote = latest_prediction(engine, "SOLUSDT", "baseline", "1h", with_samples=True)
    run_batch(job_settings(), engine, "1h", "baseline", as_of=as_of, local=True, progress=False)
    local = latest_prediction(engine, "SOLUSDT", "baseline", "1h", with_samples=True)
    assert remote is not None and local is not None and remote.id == local.id  # the same slot, replaced
    np.testing.assert_allclose(local.p50, remote.p50)
    np.testing.assert_allclose(local.samples, remote.samples)
    assert len(slot_rows(engine)) == 3


def test_a_symbol_draws_the_same_paths_whether_batched_with_others_or_alone(
    engine: Engine, inference: InferenceProcess
) -> None:
    load_market(engine, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], START, 120)
    as_of = datetime(2024, 3, 4, 10, tzinfo=UTC)
    run_batch(job_settings(inference.url), engine, "1h", "baseline", as_of=as_of, progress=False)
    grouped = latest_prediction(engine, "ETHUSDT", "baseline", "1h", with_samples=True)
    alone = job_settings(inference.url, request_series_per_call=1)
    run_batch(alone, engine, "1h", "baseline", as_of=as_of, symbols=["ETHUSDT"], progress=False)
    single = latest_prediction(engine, "ETHUSDT", "baseline", "1h", with_samples=True)
    assert grouped is not None and single is not None and grouped.samples is not None
    np.testing.assert_array_equal(grouped.samples, single.samples)


def test_killed_service_mid_batch_keeps_what_was_written_and_a_rerun_fills_the_rest(engine: Engine) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "EURUSD"]
    load_market(engine, symbols, START, 120)
    earlier, slot = datetime(2024, 3, 4, 9, tzinfo=UTC), datetime(2024, 3, 4, 10, tzinfo=UTC)
    # one series per request, one request at a time, one forecast per write, so the kill lands between symbols
    # (requests never run more than two groups ahead of the writer)
    service = InferenceProcess()
    settings = job_settings(service.url, request_series_per_call=1, concurrency=1, write_batch_rows=1)
    try:
        assert run_batch(settings, engine, "1h", "baseline", as_of=earlier, progress=False).status == "ok"
        written: list[str] = []

        def kill_after_two(symbol: str, error: str | None) -> None:
            if error is None:
                written.append(symbol)
                if len(written) == 2:
                    service.kill()

        broken = run_batch(settings, engine, "1h", "baseline", as_of=slot, progress=False, on_symbol=kill_after_two)
    finally:
        service.kill()

    assert broken.status == "partial" and broken.exit_code == 4
    assert 2 <= len(broken.ok) < len(symbols) and set(broken.ok) | set(broken.failed) == set(symbols)
    assert all("unreachable" in message for message in broken.failed.values())
    run = recent_job_runs(engine, "batch-baseline-1h")[0]
    assert run.status == "partial" and run.counts["failed"] == len(broken.failed)
    assert set(run.errors) == set(broken.failed)
    kept = {s: latest_prediction(engine, s, "baseline", "1h", with_samples=True, as_of=slot) for s in broken.ok}
    # the earlier slot of every symbol is untouched; the new slot exists only for the symbols written
    assert {(s, t) for s, t in slot_rows(engine) if t == earlier} == {(s, earlier) for s in symbols}
    assert {s for s, t in slot_rows(engine) if t == slot} == set(broken.ok)

    # with the service down from the start nothing succeeds, the exit status says so, nothing is deleted
    down = run_batch(settings, engine, "1h", "baseline", as_of=slot, progress=False)
    assert down.status == "failed" and down.exit_code == 1 and not down.ok
    assert len(slot_rows(engine)) == len(symbols) + len(broken.ok)

    restarted = InferenceProcess()
    try:
        settings = job_settings(restarted.url, request_series_per_call=1, concurrency=1)
        rerun = run_batch(settings, engine, "1h", "baseline", as_of=slot, progress=False)
    finally:
        restarted.kill()
    assert rerun.status == "ok" and set(rerun.ok) == set(symbols)
    assert len(slot_rows(engine)) == 2 * len(symbols)  # one row per slot: nothing duplicated
    for symbol, before in kept.items():  # rewritten with the same seed: the same forecast, the same row
        after = latest_prediction(engine, symbol, "baseline", "1h", with_samples=True, as_of=slot)
        assert after is not None and before is not None and after.id == before.id
        np.testing.assert_array_equal(after.samples, before.samples)


def test_symbols_without_enough_fresh_candles_are_skipped_not_failed(engine: Engine) -> None:
    load_market(engine, ["BTCUSDT"], START, 120)
    load_market(engine, ["ETHUSDT"], START + 100 * H, 10)  # only 10 candles
    settings = job_settings()
    result = run_batch(settings, engine, "1h", "baseline", as_of=START + 115 * H, local=True, progress=False)
    assert result.ok == ("BTCUSDT",) and set(result.skipped) == {"ETHUSDT"} and result.status == "ok"
    assert "need 16" in result.skipped["ETHUSDT"]
    # long after the data stopped, nothing is fresh enough: nothing succeeds, the run failed
    late = run_batch(settings, engine, "1h", "baseline", as_of=START + 30 * 24 * H, local=True, progress=False)
    assert late.status == "failed" and late.exit_code == 1 and "stale" in late.skipped["BTCUSDT"]
    with pytest.raises(ValueError, match="unknown instrument"):
        run_batch(settings, engine, "1h", "baseline", as_of=START, symbols=["NOPE"], local=True, progress=False)


def test_a_24_7_market_missing_one_candle_is_stale_and_never_forecast_into_the_past(engine: Engine) -> None:
    load_market(engine, ["BTCUSDT"], START, 120)  # the last candle opens at START + 119 h, closes at + 120 h
    settings = job_settings()
    end = START + 120 * H
    fresh = run_batch(settings, engine, "1h", "baseline", as_of=end, local=True, progress=False)
    assert fresh.ok == ("BTCUSDT",)
    forecast = latest_prediction(engine, "BTCUSDT", "baseline", "1h")
    assert forecast is not None and forecast.target_ts[0] == end  # the candle open at the slot comes first
    # Seven hours later, seven candles of a 24/7 market are missing: skipped with the reason, not forecast
    # from (that forecast would have had 7 targets before its own slot), and not called a closed market.
    later = run_batch(settings, engine, "1h", "baseline", as_of=end + 7 * H, local=True, progress=False)
    assert not later.ok and later.skipped["BTCUSDT"].startswith("stale: the 1h candle of")
    assert "market closed" not in later.skipped["BTCUSDT"]
    assert latest_prediction(engine, "BTCUSDT", "baseline", "1h").as_of == end


def test_a_closed_market_keeps_its_previous_forecast(engine: Engine) -> None:
    # EURUSD (24/5) with candles up to Friday 20:00, which closes at 21:00; FX closes Friday 22:00 UTC.
    load_market(engine, ["EURUSD"], START, 21)
    settings = job_settings()
    friday = START + 21 * H
    assert run_batch(settings, engine, "1h", "baseline", as_of=friday, local=True, progress=False).ok
    # Saturday noon: the Friday 21:00 candle is missing (stale), so nothing new is forecast...
    saturday = START + 36 * H
    quiet = run_batch(settings, engine, "1h", "baseline", as_of=saturday, local=True, progress=False)
    assert not quiet.ok and "stale" in quiet.skipped["EURUSD"]
    # ...and with that candle stored, the weekend is a closed market: no new candle, the forecast stands.
    load_market(engine, ["EURUSD"], START, 22)
    assert run_batch(settings, engine, "1h", "baseline", as_of=START + 22 * H, local=True, progress=False).ok
    weekend = run_batch(settings, engine, "1h", "baseline", as_of=saturday, local=True, progress=False)
    assert (
        not weekend.ok and "no new candle" in weekend.skipped["EURUSD"] and "market closed" in weekend.skipped["EURUSD"]
    )
    assert weekend.status == "skipped" and weekend.exit_code == 0  # nothing to do is not a failure


def test_event_tensors_go_to_models_that_use_them(
    engine: Engine, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from candlecast.config import ModelSpec
    from candlecast.models.kronos import save_random_checkpoints
    from candlecast.store.calendar import upsert_calendar

    load_market(engine, ["BTCUSDT", "SPY", "ETHUSDT"], START, 120)  # BTCUSDT and SPY are leaders
    with engine.begin() as conn:  # a CPI release inside the context window; an FOMC meeting and an NFP in the horizon
        release = START + 80 * H + timedelta(minutes=30)
        upsert_calendar(conn, pd.DataFrame({
            "event_type": ["cpi", "fomc", "nfp"],
            "scheduled_at": [release, START + 102 * H, START + 103 * H],  # the horizon is 4 candles
            "status": ["confirmed", "confirmed", "unscheduled"],  # an unscheduled one is not known in advance
            "actual": [3.0, None, 250.0],
        }))  # fmt: skip
    model_dir, tokenizer_dir = save_random_checkpoints(tmp_path_factory.mktemp("kronos"), seed=0)
    spec = ModelSpec(
        name="kronos-tiny", kind="kronos", model_source=str(model_dir), tokenizer_source=str(tokenizer_dir),
        max_context=64,
    )  # fmt: skip
    settings = job_settings(request_series_per_call=3, sample_count=4)
    settings = settings.model_copy(
        update={
            "models": "kronos-tiny", "model_sources": {"kronos-tiny": spec}, "database_url": db_url,
            "inference": settings.inference.model_copy(update={"load_adapters": False}),  # no fine-tuned adapters
        }
    )  # fmt: skip
    result = run_batch(settings, engine, "1h", "kronos-tiny", as_of=START + 100 * H, local=True, progress=False)
    assert result.ok == ("BTCUSDT", "ETHUSDT", "SPY"), result.failed
    eth = latest_prediction(engine, "ETHUSDT", "kronos-tiny", "1h")
    assert eth is not None and eth.event_context["events"] is True
    active = set(eth.event_context["active_channels"])
    assert 1 in active and 14 in active  # is_cpi at the release hour; the BTC leader return
    # the horizon rows carry the scheduled FOMC meeting (flag, countdown) but not the unscheduled NFP; the
    # first one also the leader returns of the candle that closed at the slot
    ahead = set(eth.event_context["horizon_channels"])
    assert {0, 10, 11} <= ahead and 2 not in ahead
    baseline = run_batch(job_settings(), engine, "1h", "baseline", as_of=START + 100 * H, local=True, progress=False)
    assert baseline.ok and latest_prediction(engine, "ETHUSDT", "baseline", "1h").event_context["events"] is False
    # Kronos gives OHLC paths: their highs and lows are stored beside the closes; the baseline's are not
    kronos = latest_prediction(engine, "ETHUSDT", "kronos-tiny", "1h", with_samples=True)
    assert kronos is not None and kronos.samples is not None and kronos.samples_high is not None
    assert kronos.samples_high.shape == kronos.samples.shape == (4, 4) and kronos.samples_low is not None
    assert latest_prediction(engine, "ETHUSDT", "baseline", "1h", with_samples=True).samples_high is None


def test_the_minimum_context_applies_to_each_timeframe_separately(engine: Engine) -> None:
    # 40 closed candles on each timeframe: too few for an hourly minimum of 48, enough for a daily one of 32
    load_market(engine, ["BTCUSDT"], START, 40, timeframe="1h")
    load_market(engine, ["BTCUSDT"], START, 40, timeframe="1d")
    hourly_slot, daily_slot = START + 40 * H, START + timedelta(days=40)
    settings = job_settings(min_context_1h=48, min_context_1d=32)
    hourly = run_batch(settings, engine, "1h", "baseline", as_of=hourly_slot, local=True, progress=False)
    daily = run_batch(settings, engine, "1d", "baseline", as_of=daily_slot, local=True, progress=False)
    assert not hourly.ok and "40 candles closed" in hourly.skipped["BTCUSDT"] and "need 48" in hourly.skipped["BTCUSDT"]
    assert daily.ok == ("BTCUSDT",) and not daily.skipped
    # and the other way round
    settings = job_settings(min_context_1h=32, min_context_1d=48)
    hourly = run_batch(settings, engine, "1h", "baseline", as_of=hourly_slot, local=True, progress=False)
    daily = run_batch(settings, engine, "1d", "baseline", as_of=daily_slot, local=True, progress=False)
    assert hourly.ok == ("BTCUSDT",) and not hourly.skipped
    assert not daily.ok and "need 48" in daily.skipped["BTCUSDT"]


def test_the_old_single_min_context_setting_still_applies_to_both_timeframes(monkeypatch: pytest.MonkeyPatch) -> None:
    from candlecast.config import Settings

    monkeypatch.setenv("CANDLECAST_JOBS__MIN_CONTEXT", "20")
    assert (Settings().jobs.min_context_for("1h"), Settings().jobs.min_context_for("1d")) == (20, 20)
    monkeypatch.setenv("CANDLECAST_JOBS__MIN_CONTEXT_1D", "70")  # the per-timeframe setting wins over the old one
    assert (Settings().jobs.min_context_for("1h"), Settings().jobs.min_context_for("1d")) == (20, 70)


def test_a_model_that_needs_more_candles_than_the_job_minimum_skips_short_series(engine: Engine) -> None:
    # GARCH fits on at least garch.min_window (100) candles: 80 daily candles are skipped with the reason,
    # not failed, although the job's own daily minimum is lower.
    start = datetime(2024, 1, 1, tzinfo=UTC)
    load_market(engine, ["BTCUSDT"], start, 80, timeframe="1d")
    load_market(engine, ["ETHUSDT"], start - timedelta(days=100), 180, timeframe="1d")
    settings = job_settings(min_context_1d=16, pred_len_1d=3, context_1d=200)
    result = run_batch(settings, engine, "1d", "garch", as_of=start + timedelta(days=80), local=True, progress=False)
    assert result.ok == ("ETHUSDT",) and not result.failed, (result.failed, result.skipped)
    assert "need 100" in result.skipped["BTCUSDT"]


def test_chunked_reads_and_batched_writes_store_the_same_forecasts_as_one_read_and_one_write(engine: Engine) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOTUSDT"]
    load_market(engine, symbols, START, 120)
    slot = START + 100 * H
    whole = job_settings(request_series_per_call=8, read_chunk_symbols=100, write_batch_rows=100)
    first = run_batch(whole, engine, "1h", "baseline", as_of=slot, local=True, progress=False)
    assert first.ok == tuple(sorted(symbols))
    before = {s: latest_prediction(engine, s, "baseline", "1h", with_samples=True) for s in symbols}
    # 3 instruments per read, 2 series per request, at most 3 forecasts per write: every boundary is crossed
    pieces = job_settings(request_series_per_call=2, read_chunk_symbols=3, write_batch_rows=3)
    again = run_batch(pieces, engine, "1h", "baseline", as_of=slot, local=True, progress=False)
    assert again.ok == first.ok and again.status == "ok" and not again.failed
    assert len(slot_rows(engine)) == len(symbols)  # replaced, not duplicated
    for symbol, earlier in before.items():
        later = latest_prediction(engine, symbol, "baseline", "1h", with_samples=True)
        assert earlier is not None and later is not None and later.id == earlier.id
        np.testing.assert_array_equal(later.samples, earlier.samples)
        assert later.event_context == earlier.event_context
    assert set(again.timings) >= {"store_read_s", "store_write_s", "requests_s", "request_calls_s"}
    assert recent_job_runs(engine, "batch-baseline-1h")[0].counts["timings"] == again.timings


def test_rewriting_a_slot_drops_the_scores_of_its_replaced_forecasts_only(engine: Engine) -> None:
    load_market(engine, ["BTCUSDT", "ETHUSDT"], START, 120)
    settings = job_settings()
    slot = START + 100 * H
    for as_of in (slot - H, slot):
        assert run_batch(settings, engine, "1h", "baseline", as_of=as_of, local=True, progress=False).status == "ok"
    assert run_scoring(settings, engine, "1h", as_of=slot + 4 * H).steps_scored > 0
    before = evaluations_frame(engine)
    again = job_settings(sample_count=8)  # a different forecast for the same slot
    assert run_batch(again, engine, "1h", "baseline", as_of=slot, local=True, progress=False).status == "ok"
    after = evaluations_frame(engine)
    assert set(after.as_of) == {slot - H} and len(after) == len(before[before.as_of == slot - H])
    assert len(slot_rows(engine)) == 4


def test_a_row_the_database_refuses_fails_alone_and_every_written_forecast_notifies(
    engine: Engine, db_url: str
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
    load_market(engine, symbols, START, 120)
    settings = job_settings(request_series_per_call=4)  # one request, so one write of all four forecasts
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    refuse_eth = "ALTER TABLE ml_predictions ADD CONSTRAINT test_no_eth CHECK (symbol <> 'ETHUSDT') NOT VALID"
    with engine.begin() as conn:  # the database refuses ETHUSDT's row (and only it)
        conn.exec_driver_sql(refuse_eth)
    try:
        with psycopg.connect(conninfo, autocommit=True) as listener:
            listener.execute("LISTEN ml_predictions")
            result = run_batch(settings, engine, "1h", "baseline", as_of=START + 100 * H, local=True, progress=False)
            notified = [json.loads(n.payload)["symbol"] for n in listener.notifies(timeout=2, stop_after=4)]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE ml_predictions DROP CONSTRAINT test_no_eth")
    assert result.ok == ("BNBUSDT", "BTCUSDT", "SOLUSDT") and list(result.failed) == ["ETHUSDT"]
    refused = result.failed["ETHUSDT"]
    assert refused.startswith("write failed: CheckViolation") and "test_no_eth" in refused
    assert result.status == "partial" and result.exit_code == 4
    assert {s for s, _ in slot_rows(engine)} == set(result.ok)
    assert sorted(notified) == sorted(result.ok)  # one NOTIFY per written forecast, none for the refused one


def test_a_second_batch_for_a_slot_being_forecast_skips_it_and_says_which_run_has_it(
    engine: Engine, db_url: str
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    load_market(engine, symbols, START, 120)
    env = {
        **os.environ, "DATABASE_URL": db_url, "CANDLECAST_MODELS": "baseline", "CANDLECAST_JOBS__CONTEXT_1H": "64",
        "CANDLECAST_JOBS__MIN_CONTEXT_1H": "16", "CANDLECAST_JOBS__PRED_LEN_1H": "4", "COLUMNS": "200",
    }  # fmt: skip
    command = [sys.executable, "-c", "from candlecast.cli import run; run()", "batch", "-t", "1h", "-m", "baseline",
               "--as-of", (START + 100 * H).isoformat(), "--local", "--no-progress"]  # fmt: skip
    with engine.connect() as blocker:
        # the first run forecasts, then waits to write while ml_predictions is locked against writes
        blocker.exec_driver_sql("LOCK TABLE ml_predictions IN EXCLUSIVE MODE")
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (running := running_runs(engine)) and time.monotonic() < deadline:
                assert first.poll() is None, first.communicate()[0]
                time.sleep(0.1)
            (holder,) = running
            second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        finally:
            blocker.rollback()  # let the first run write
        output, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and "3 written, 0 failed" in output, output
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 written, 0 failed, 0 skipped" in second.stdout and f"job run {holder.id}" in second.stdout
    runs = {r.id: r for r in recent_job_runs(engine, "batch-baseline-1h")}
    assert runs[holder.id].status == "ok" and runs[holder.id].counts["ok"] == 3
    (skipped,) = [r for r in runs.values() if r.id != holder.id]
    assert skipped.status == "skipped" and skipped.counts["ok"] == 0 and f"job run {holder.id}" in (skipped.error or "")
    assert len(slot_rows(engine)) == 3  # written once
    # once the first has finished, running the slot again replaces it as usual
    assert run_batch(job_settings(), engine, "1h", "baseline", as_of=START + 100 * H, local=True, progress=False).ok
    assert len(slot_rows(engine)) == 3
