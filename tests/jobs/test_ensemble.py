"""The ensemble job: CRPS-weighted combination of the member forecasts of a slot, its weights stored with the row,
no look-ahead, the two combination rules, the cron entries, the replay and the command line."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from candlecast.calibration import sample_centre, stretch_samples
from candlecast.config import DEFAULT_CRON, ModelSpec, Settings
from candlecast.errors import InputError
from candlecast.jobs.batch import run_batch
from candlecast.jobs.ensemble import (
    ENSEMBLE_MODEL,
    METHOD_MIXTURE,
    METHOD_QUANTILE_AVERAGE,
    path_counts,
    run_ensemble,
)
from candlecast.jobs.replay import run_replay
from candlecast.jobs.scheduler import job_specs, parse_cron, run_job
from candlecast.jobs.scoring import run_scoring
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.jobs import recent_job_runs
from candlecast.store.predictions import Prediction, latest_prediction, upsert_prediction

from .conftest import job_settings, load_market

START = datetime(2024, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PRED_LEN = 4
T = START + 100 * H  # the slot under test
MEMBERS = ["sharp", "vague"]  # two synthetic models: one close to what happened, one wide around the last close


def settings(**ensemble: object) -> Settings:
    base = job_settings()
    return base.model_copy(update={"ensemble": base.ensemble.model_copy(update={"members": MEMBERS, **ensemble})})


def synthetic(frame: pd.DataFrame, symbol: str, model: str, as_of: datetime, seed: int) -> Prediction:
    """``sharp``: 16 paths within 0.2% of the realised closes; ``vague``: 16 paths 3% wide around the last close."""
    rng = np.random.default_rng(seed)
    closes = frame.set_index("ts")["close"]
    last = float(closes[closes.index < as_of].iloc[-1])
    targets = [as_of + h * H for h in range(PRED_LEN)]
    if model == "sharp":
        centre = closes.reindex(pd.DatetimeIndex(targets)).fillna(last).to_numpy()
        samples = centre * np.exp(rng.normal(0, 0.002, (16, PRED_LEN)))
    else:
        samples = last * np.exp(rng.normal(0, 0.03, (16, PRED_LEN)))
    return Prediction(
        symbol=symbol, timeframe="1h", model_name=model, as_of=as_of, target_ts=targets,
        p10=np.quantile(samples, 0.1, axis=0), p50=np.quantile(samples, 0.5, axis=0),
        p90=np.quantile(samples, 0.9, axis=0), last_close=last, samples=samples, model_version=f"{model}-1",
    )  # fmt: skip


def write_history(engine: Engine, first: datetime, last: datetime, score_as_of: datetime) -> dict[str, pd.DataFrame]:
    """Candles, member forecasts at every hourly slot from ``first`` to ``last``, scored as of ``score_as_of``."""
    frames = load_market(engine, SYMBOLS, START, 130)
    slot, seed = first, 0
    while slot <= last:
        for symbol in SYMBOLS:
            for model in MEMBERS:
                seed += 1
                with engine.begin() as conn:
                    upsert_prediction(conn, synthetic(frames[symbol], symbol, model, slot, seed))
        slot += H
    run_scoring(job_settings(), engine, "1h", as_of=score_as_of)
    return frames


def ensemble_row(engine: Engine, symbol: str, as_of: datetime) -> Prediction:
    p = latest_prediction(engine, symbol, ENSEMBLE_MODEL, "1h", with_samples=True, as_of=as_of)
    assert p is not None and p.as_of == as_of and p.samples is not None and p.event_context is not None
    return p


def expected_weights(engine: Engine, symbol: str, slot: datetime, power: float = 2.0) -> dict[str, float]:
    """The weights recomputed from the stored scores: mean CRPS over the steps of candles closed by the slot, of
    the origins where both members have a forecast with the same steps scored; weight ~ mean ** -power."""
    scores = evaluations_frame(engine)
    scores = scores[(scores.symbol == symbol) & scores.model_name.isin(MEMBERS) & scores.crps.notna()]
    scores = scores[scores.target_ts + H <= pd.Timestamp(slot)]
    steps = scores.pivot_table(index="as_of", columns="model_name", values="step", aggfunc=tuple).dropna()
    common = steps.index[steps.apply(lambda row: len(set(row)) == 1, axis=1)]
    raw = scores[scores.as_of.isin(common)].groupby("model_name").crps.mean() ** -power
    return (raw / raw.sum()).to_dict()


def test_the_better_model_gets_more_weight_and_the_weights_are_stored_with_the_row(engine: Engine) -> None:
    write_history(engine, START + 70 * H, T, score_as_of=T)
    result = run_ensemble(settings(min_history=5), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    assert result.ok == tuple(SYMBOLS) and result.status == "ok" and result.model == ENSEMBLE_MODEL
    for symbol in SYMBOLS:
        stored = ensemble_row(engine, symbol, T)
        context = stored.event_context
        assert context is not None
        ensemble = context["ensemble"]
        weights = ensemble["weights"]
        assert weights["sharp"] > 0.9 > 0.1 > weights["vague"]  # the better model gets more weight
        assert weights == pytest.approx(expected_weights(engine, symbol, T), abs=1e-6)
        history = ensemble["history"]
        assert history["rule"] == "crps" and history["forecasts"] == 30  # forecasts 70..99 h have a step closed by T
        assert history["until"] == T.isoformat() and ensemble["method"] == METHOD_MIXTURE
        members = {m["model_name"]: m for m in ensemble["members"]}
        assert set(members) == set(MEMBERS) and all(m["gives_samples"] for m in members.values())
        sharp = latest_prediction(engine, symbol, "sharp", "1h", as_of=T)
        assert sharp is not None and members["sharp"]["prediction_id"] == sharp.id
        assert members["sharp"]["mean_crps"] < members["vague"]["mean_crps"]
        assert context["gives_samples"] is True and stored.model_version.startswith("ensemble-1(")
    (run,) = recent_job_runs(engine, "batch-ensemble-1h")
    assert run.status == "ok" and run.counts["ok"] == 2


def test_equal_weights_while_the_history_is_short(engine: Engine) -> None:
    write_history(engine, START + 90 * H, T, score_as_of=T)  # 10 forecasts with a step closed by T
    run_ensemble(settings(min_history=11), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    ensemble = ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]  # type: ignore[index]
    assert ensemble["weights"] == {"sharp": 0.5, "vague": 0.5}
    assert ensemble["history"]["rule"] == "equal" and ensemble["history"]["forecasts"] == 10
    assert "history short: 10 forecasts" in ensemble["history"]["reason"]
    run_ensemble(settings(min_history=10), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    assert ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["history"]["rule"] == "crps"  # type: ignore[index]


def test_members_are_compared_only_on_forecasts_they_all_have_with_the_same_steps_scored(engine: Engine) -> None:
    write_history(engine, START + 90 * H, T, score_as_of=T)  # 10 forecasts with a step closed by T
    with engine.begin() as conn:  # vague lacks one origin; sharp has one step less scored at another
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE model_name = 'vague' AND as_of = :t"), {"t": T - 5 * H})
        conn.execute(
            sa.text("DELETE FROM signal_evaluations WHERE model_name = 'sharp' AND as_of = :t AND step = 1"),
            {"t": T - 7 * H},
        )
    run_ensemble(settings(min_history=1), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    history = ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["history"]  # type: ignore[index]
    assert history["forecasts"] == 8 and history["rule"] == "crps"
    assert history["steps"] == 8 * 4 - (1 + 2 + 3)  # the forecasts of T-3..T-1 h have 3, 2, 1 steps closed by T
    assert ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["weights"] == pytest.approx(  # type: ignore[index]
        expected_weights(engine, "BTCUSDT", T), abs=1e-6
    )


def test_the_weights_use_no_outcome_realised_after_the_slot(engine: Engine) -> None:
    later = T + 12 * H
    write_history(engine, START + 70 * H, later, score_as_of=later)  # scores up to 12 h past the slot exist
    cfg = settings(min_history=5)
    flags = dict.fromkeys(MEMBERS, True)
    run_ensemble(cfg, engine, "1h", as_of=T, gives_samples=flags)
    run_ensemble(cfg, engine, "1h", as_of=later, gives_samples=flags)
    before, before_later = ensemble_row(engine, "BTCUSDT", T), ensemble_row(engine, "BTCUSDT", later)
    # every outcome realised after the slot is rewritten: the sharp model did terribly there
    with engine.begin() as conn:
        changed = conn.execute(
            sa.text(
                "UPDATE signal_evaluations SET crps = crps * 1000, realised_close = realised_close * 3 "
                "WHERE model_name = 'sharp' AND target_ts + interval '1 hour' > :slot"
            ),
            {"slot": T},
        ).rowcount
    assert changed > 0
    run_ensemble(cfg, engine, "1h", as_of=T, gives_samples=flags)
    run_ensemble(cfg, engine, "1h", as_of=later, gives_samples=flags)
    after, after_later = ensemble_row(engine, "BTCUSDT", T), ensemble_row(engine, "BTCUSDT", later)
    assert after.event_context["ensemble"] == before.event_context["ensemble"]  # type: ignore[index]
    np.testing.assert_array_equal(after.samples, before.samples)
    np.testing.assert_array_equal(after.p50, before.p50)
    # the rewrite mattered to a slot after it
    assert after_later.event_context["ensemble"]["weights"]["sharp"] < 0.5  # type: ignore[index]
    assert before_later.event_context["ensemble"]["weights"]["sharp"] > 0.9  # type: ignore[index]


def test_the_quantiles_come_from_the_mixture_of_member_paths(engine: Engine) -> None:
    write_history(engine, START + 70 * H, T, score_as_of=T)
    run_ensemble(settings(min_history=5, power=0.5), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    stored = ensemble_row(engine, "ETHUSDT", T)
    assert stored.samples is not None and stored.samples.shape == (16, PRED_LEN)  # jobs.sample_count
    for name, level in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9)):
        np.testing.assert_allclose(
            getattr(stored, name), np.quantile(stored.samples.astype(np.float64), level, axis=0), rtol=1e-12
        )
    ensemble = stored.event_context["ensemble"]  # type: ignore[index]
    counts = path_counts([ensemble["weights"][m] for m in MEMBERS], 16)
    assert {m["model_name"]: m["paths"] for m in ensemble["members"]} == dict(
        zip(MEMBERS, counts.tolist(), strict=True)
    )
    assert 0 < counts[1] < counts[0]  # power 0.5: the vague model keeps a share
    # each path is one of a member's own paths, in the member's share
    origin = []
    for path in stored.samples:
        owners = []
        for model in MEMBERS:
            member = latest_prediction(engine, "ETHUSDT", model, "1h", with_samples=True, as_of=T)
            assert member is not None and member.samples is not None
            if any(np.array_equal(path, own) for own in member.samples):
                owners.append(model)
        assert len(owners) == 1
        origin.append(owners[0])
    assert [origin.count(m) for m in MEMBERS] == counts.tolist()


def test_calibrated_members_are_mixed_by_their_own_paths_not_the_served_ones(engine: Engine) -> None:
    frames = write_history(engine, START + 70 * H, T, score_as_of=T)
    own: dict[str, np.ndarray] = {}
    for seed, model in enumerate(MEMBERS):  # the slot's member forecasts, as calibration stores them
        raw = synthetic(frames["ETHUSDT"], "ETHUSDT", model, T, 1000 + seed)
        assert raw.samples is not None
        a, b = sample_centre(raw.samples)
        lower, upper = a - 2.5 * (a - raw.p10), b + 0.5 * (raw.p90 - b)  # wider below, narrower above
        served = stretch_samples(raw.samples, lower, upper).astype(np.float32)
        calibrated = dataclasses.replace(raw, p10=lower, p90=upper, p10_raw=raw.p10, p90_raw=raw.p90, samples=served)
        with engine.begin() as conn:
            upsert_prediction(conn, calibrated)
        own[model] = raw.samples.astype(np.float32).astype(np.float64)
    run_ensemble(settings(min_history=5, power=0.5), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    stored = ensemble_row(engine, "ETHUSDT", T)
    assert stored.samples is not None
    for path in stored.samples.astype(np.float64):  # every mixed path is one of a member's own paths
        assert any(np.allclose(path, mine, rtol=1e-5) for paths in own.values() for mine in paths)


def test_a_member_without_samples_is_averaged_by_quantiles_never_mixed(engine: Engine) -> None:
    write_history(engine, START + 70 * H, T, score_as_of=T)
    run_ensemble(settings(min_history=5), engine, "1h", as_of=T, gives_samples={"sharp": True, "vague": False})
    stored = ensemble_row(engine, "BTCUSDT", T)
    context = stored.event_context
    assert context is not None and context["ensemble"]["method"] == METHOD_QUANTILE_AVERAGE
    assert context["gives_samples"] is False
    weights = context["ensemble"]["weights"]
    members = {m: latest_prediction(engine, "BTCUSDT", m, "1h", with_samples=True, as_of=T) for m in MEMBERS}
    for name in ("p10", "p50", "p90"):
        expected = sum(weights[m] * getattr(p, name) for m, p in members.items() if p is not None)
        np.testing.assert_allclose(getattr(stored, name), expected, rtol=1e-5)
    assert stored.samples is not None
    np.testing.assert_array_equal(stored.samples, np.sort(stored.samples, axis=0))  # comonotone, rebuilt paths
    # the rebuilt paths are the weighted quantile functions of the members, not any member's own paths
    levels = (np.arange(16) + 0.5) / 16
    rebuilt = sum(
        weights[m] * np.quantile(p.samples.astype(np.float64), levels, axis=0)
        for m, p in members.items()
        if p is not None and p.samples is not None
    )
    np.testing.assert_allclose(stored.samples, rebuilt, rtol=1e-6)


def test_members_are_asked_their_capabilities_and_unknown_ones_are_not_mixed(engine: Engine) -> None:
    write_history(engine, START + 90 * H, T, score_as_of=T)
    # no inference service answers at the configured URL: capabilities unknown, so quantile averaging
    result = run_ensemble(settings(), engine, "1h", as_of=T, local=False)
    assert result.status == "ok"
    assert ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["method"] == METHOD_QUANTILE_AVERAGE  # type: ignore[index]
    # what a member's stored row says about itself is believed (the batch job may record it)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ml_predictions SET event_context = '{\"gives_samples\": true}' WHERE model_name <> :e"),
            {"e": ENSEMBLE_MODEL},
        )
    run_ensemble(settings(), engine, "1h", as_of=T, local=False)
    assert ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["method"] == METHOD_MIXTURE  # type: ignore[index]


def test_a_symbol_with_too_few_members_is_skipped_saying_why(engine: Engine) -> None:
    write_history(engine, START + 95 * H, T, score_as_of=T)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM ml_predictions WHERE symbol = 'ETHUSDT' AND model_name = 'vague'"))
    result = run_ensemble(settings(), engine, "1h", as_of=T, gives_samples=dict.fromkeys(MEMBERS, True))
    assert result.ok == ("BTCUSDT",) and result.status == "ok"
    assert "1 usable member forecast(s)" in result.skipped["ETHUSDT"]
    assert "vague: no forecast at this slot" in result.skipped["ETHUSDT"]
    nothing = run_ensemble(settings(), engine, "1h", as_of=T + 50 * H)
    assert nothing.ok == () and nothing.status == "failed" and nothing.exit_code == 1
    with pytest.raises(InputError, match="at least 2 member models"):
        run_ensemble(settings(members=["sharp"]), engine, "1h", as_of=T)


def two_baselines(**jobs: object) -> Settings:
    """Two real in-process models: the bootstrap baseline and a Gaussian one."""
    gaussian = ModelSpec(name="gaussian", kind="baseline", model_source="gaussian")
    base = job_settings(local=True, **jobs)
    return base.model_copy(update={"models": "baseline,gaussian", "model_sources": {"gaussian": gaussian}})


def test_the_cron_table_runs_the_ensemble_after_the_base_batches_of_the_same_slot(engine: Engine) -> None:
    for tf in ("1h", "1d"):
        base, ensemble = (
            parse_cron(DEFAULT_CRON[f"baseline-batch-{tf}"]),
            parse_cron(DEFAULT_CRON[f"ensemble-batch-{tf}"]),
        )
        fire = base.get_next_fire_time(None, START)
        after = ensemble.get_next_fire_time(None, fire)
        assert fire < after < fire + timedelta(minutes=15) and after.hour == fire.hour
    skipped = {s.name: s for s in job_specs(job_settings())}["ensemble-batch-1h"]  # models = baseline only
    assert skipped.kind == "ensemble" and "at least 2 member models" in (skipped.skip_reason or "")
    cfg = two_baselines()
    spec = {s.name: s for s in job_specs(cfg)}["ensemble-batch-1d"]
    assert (spec.kind, spec.timeframe, spec.skip_reason) == ("ensemble", "1d", None)
    load_market(engine, SYMBOLS, START, 120)
    for model in ("baseline", "gaussian"):
        run_batch(cfg, engine, "1h", model, as_of=T, local=True, progress=False)
    outcome = run_job(cfg, engine, "ensemble-batch-1h", scheduled_for=T + 59 * timedelta(minutes=1))
    assert outcome.action == "ran" and outcome.status == "ok"
    stored = ensemble_row(engine, "BTCUSDT", T)  # the fire at 12:59 belongs to the slot of 12:00
    assert stored.event_context["ensemble"]["method"] == METHOD_MIXTURE  # type: ignore[index]  # asked in-process


def test_replaying_the_ensemble_replays_its_members_and_weighs_only_what_had_closed(engine: Engine) -> None:
    load_market(engine, SYMBOLS, START, 120)
    cfg = two_baselines()
    cfg = cfg.model_copy(update={"ensemble": cfg.ensemble.model_copy(update={"min_history": 3})})
    first, last = START + 80 * H, START + 110 * H
    result = run_replay(cfg, engine, "1h", ENSEMBLE_MODEL, first, last, every=2, progress=False)
    assert result.slots == 16 and result.predictions_written == 16 * 2 and result.symbols_failed == 0
    (run,) = recent_job_runs(engine, "replay-ensemble-1h")
    assert run.status == "ok" and run.counts["member_forecasts"] == {"baseline": 32, "gaussian": 32}
    scored = evaluations_frame(engine)
    assert set(scored.model_name) == {"baseline", "gaussian", ENSEMBLE_MODEL}  # the ensemble is scored too
    late = START + 100 * H
    replayed = ensemble_row(engine, "ETHUSDT", late)
    assert replayed.event_context["ensemble"]["history"]["rule"] == "crps"  # type: ignore[index]
    # run again now that every later outcome is scored: the same weights, the same paths
    run_ensemble(cfg, engine, "1h", as_of=late, symbols=["ETHUSDT"])
    again = ensemble_row(engine, "ETHUSDT", late)
    assert again.event_context == replayed.event_context
    np.testing.assert_array_equal(again.samples, replayed.samples)


def test_batch_with_model_ensemble_on_the_command_line(engine: Engine, db_url: str, monkeypatch) -> None:
    import typer
    from typer.testing import CliRunner

    from candlecast.config import get_settings
    from candlecast.jobs.cli import register

    load_market(engine, SYMBOLS, START, 120)
    cfg = two_baselines()
    for model in ("baseline", "gaussian"):
        run_batch(cfg, engine, "1h", model, as_of=T, local=True, progress=False)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CANDLECAST_MODELS", "baseline,gaussian")
    monkeypatch.setenv("CANDLECAST_MODEL_SOURCES", '{"gaussian": {"name": "gaussian", "kind": "baseline", '
                       '"model_source": "gaussian"}}')  # fmt: skip
    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(app, ["batch", "-t", "1h", "-m", "ensemble", "--as-of", T.isoformat(), "--local"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert "batch-ensemble-1h" in done.output and "2 written, 0 failed" in done.output
    assert ensemble_row(engine, "BTCUSDT", T).event_context["ensemble"]["method"] == METHOD_MIXTURE  # type: ignore[index]
