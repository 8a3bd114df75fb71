"""Calibrated vs raw bands on the shipped data, replayed exactly as production runs (docs/calibration.md).

In a throwaway database (``candlecast.store.db.temporary_database``) the shipped candles of SPY, QQQ, NVDA and
WTI (daily) and BTCUSDT (hourly) are loaded, and each model is replayed slot by slot with
``candlecast.jobs.replay.run_replay``: at every slot the batch job forecasts, calibrates from what was known at
that slot and writes; then scoring runs as of that slot. A warm-up stretch before the evaluation period gives
calibration its first outcomes (production has them too); only forecasts made in the evaluation period are
scored in the table. After the replays every step whose candle exists is scored (``run_scoring`` as of the
end of the data), the scores of warm-up forecasts are deleted and ``signal_performance`` is rebuilt, so the
table is read straight from ``store.performance`` (the all-steps row, window ``all``):

- ``cov`` / ``cov_raw``: p10–p90 coverage of the served (calibrated) band and of the model's own band
  (nominal 0.80);
- ``crps_bp``: fair CRPS in basis points of the last close; ``skill``: 1 - CRPS / CRPS of the random walk,
  with ``dm_p`` the Diebold–Mariano p-value (HAC); ``hit``: direction hit rate;
- ``cov_90%``: a 90% interval for ``cov`` (circular block bootstrap over forecasts, blocks as long as the horizon:
  overlapping forecasts share outcomes; rough where the period holds few horizons, e.g. 2.5 for BTC hourly);
- ``cov_nw90``: the 90% interval the track record serves, stored in ``signal_performance`` (``coverage_low``,
  ``coverage_high``: normal, with the Newey–West variance of the per-forecast coverage, horizon - 1 lags);
- ``below`` / ``above``: share of the scored steps below the served p10 / above the served p90 (0.10 each);
- ``steps`` / ``fcst``: scored steps and forecasts; ``width``: mean served band width / raw band width.

Then calibrated coverage per quarter (the research note: ACI lags shocks, so look per quarter too).

Defaults (all settings at their defaults otherwise: 30 daily steps, 120 hourly steps, 32 samples):
daily evaluation 2018-01-01 → 2018-12-31 after a warm-up from 2017-04-01; hourly evaluation of the 300 slots
up to 2019-10-12 23:00 after 600 warm-up slots (step h is calibrated once 5 h of its outcomes are known, so
step 120 needs 600). Shorter: ``--every 2`` (every other slot), ``--models baseline``, ``--no-hourly``,
``--no-daily``, ``--warmup-from 2017-10-01``, ``--hourly-slots 150 --hourly-warmup 300``. ``--raw-too`` replays
everything again with ``jobs.calibrate = false`` and adds the raw forecasts' CRPS and skill (``crps_bp_raw``,
``skill_raw``): what calibrating the samples costs or gains.

    PYTHONPATH=src .venv/bin/python bench/calibration.py [--models baseline,garch] [--every 1] [--raw-too]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from datetime import UTC, datetime

import pandas as pd
from replays import add_period_arguments, load_candles, periods, replay

from candlecast.config import Settings
from candlecast.jobs.ensemble import ENSEMBLE_MODEL
from candlecast.jobs.scoring import refresh_performance, run_scoring
from candlecast.scores import block_bootstrap_interval
from candlecast.store import create_engine_for
from candlecast.store._sql import read_frame
from candlecast.store.db import temporary_database
from candlecast.store.performance import performance

GOAL = 0.04  # calibrated coverage within 0.80 +- 4 points
MIN_STEPS = 150  # on every row with at least this many scored steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline,garch,ensemble", help="ensemble: replayed with the others")
    add_period_arguments(parser)
    parser.add_argument("--raw-too", action="store_true", help="replay again with calibration off (twice the time)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    load = os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
    with temporary_database(prefix="candlecast_bench") as url:
        table, quarters = evaluate(args, url, calibrate=True)
    if args.raw_too:
        print("again with jobs.calibrate = false:")
        with temporary_database(prefix="candlecast_bench") as url:
            raw, _ = evaluate(args, url, calibrate=False)
        table["crps_bp_raw"], table["skill_raw"] = raw["crps_bp"], raw["skill"]
    table["goal"] = [
        ("ok" if abs(c - 0.8) <= GOAL else "MISSED") if n >= MIN_STEPS else "n/a"
        for c, n in zip(table["cov"], table["steps"], strict=True)
    ]
    pd.set_option("display.width", 240)
    pd.set_option("display.max_columns", 24)
    print(f"\nAll steps, forecasts of the evaluation period (goal: cov within 0.80 +- {GOAL:.2f} where steps >= "
          f"{MIN_STEPS}):")  # fmt: skip
    digits = {"cov": 3, "cov_raw": 3, "crps_bp": 1, "crps_bp_raw": 1, "skill": 4, "skill_raw": 4, "dm_p": 3, "hit": 3}
    print(table.round({**digits, "width": 2}).to_string(index=False))
    print("\nCalibrated (raw) coverage per quarter of forecast origin:")
    print(quarters.to_string())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min): "
          "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))  # fmt: skip


def evaluate(args: argparse.Namespace, url: str, calibrate: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the data, replay every model, score; the table (one row per series and model) and the quarters."""
    wanted_models = [m.strip() for m in args.models.split(",") if m.strip()]
    ensemble = ENSEMBLE_MODEL in wanted_models
    members = [m for m in wanted_models if m != ENSEMBLE_MODEL]
    settings = Settings(models=",".join(members), jobs={"calibrate": calibrate})
    models = members + ([ENSEMBLE_MODEL] if ensemble else [])
    engine = create_engine_for(url)
    wanted = periods(args)
    load_candles(settings, engine, wanted)
    replay(settings, engine, models, wanted, args.every)

    rows = []
    for p in wanted:
        timeframe, symbols, evaluated_from = p.timeframe, p.symbols, p.evaluated_from
        # every step whose candle exists, then only the forecasts of the evaluation period
        run_scoring(settings, engine, timeframe, as_of=datetime(2030, 1, 1, tzinfo=UTC), refresh=False)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "DELETE FROM signal_evaluations WHERE timeframe = %(tf)s AND as_of < %(start)s",
                {"tf": timeframe, "start": evaluated_from},
            )
        refresh_performance(engine, timeframe)
        widths = _widths(engine, timeframe, evaluated_from)
        served = _served_band(engine, timeframe)
        for symbol in symbols:
            for model in models:
                for r in performance(engine, symbol=symbol, model_name=model, timeframe=timeframe):
                    rows.append({
                        "series": f"{symbol} {timeframe}", "model": model, "cov": r.coverage, "cov_raw": r.coverage_raw,
                        "crps_bp": r.crps_bp, "skill": r.crps_skill, "dm_p": r.dm_pvalue, "hit": r.hit_rate,
                        **served.get((symbol, model), {}),
                        "cov_nw90": None if r.coverage_low is None or r.coverage_high is None
                        else f"[{r.coverage_low:.2f}, {r.coverage_high:.2f}]",
                        "steps": r.n_steps, "fcst": r.n_predictions, "width": widths.get((symbol, model)),
                        "from": f"{r.first_as_of:%Y-%m-%d %H:%M}", "to": f"{r.last_as_of:%Y-%m-%d %H:%M}",
                    })  # fmt: skip
    quarters = _quarters(engine)
    engine.dispose()
    return pd.DataFrame(rows), quarters


def _widths(engine, timeframe: str, since: datetime) -> dict[tuple[str, str], float]:  # type: ignore[no-untyped-def]
    """Mean over the evaluated forecasts and steps of served band width / raw band width."""
    frame = read_frame(
        engine,
        """SELECT symbol, model_name, avg((p90[i] - p10[i]) / nullif(p90_raw[i] - p10_raw[i], 0)) AS ratio
           FROM ml_predictions, generate_subscripts(p10, 1) AS i
           WHERE timeframe = %(tf)s AND as_of >= %(since)s AND p10_raw IS NOT NULL
           GROUP BY symbol, model_name""",
        {"tf": timeframe, "since": since},
    )
    return {(r.symbol, r.model_name): float(r.ratio) for r in frame.itertuples()}


def _served_band(engine, timeframe: str) -> dict[tuple[str, str], dict[str, object]]:  # type: ignore[no-untyped-def]
    """Per (symbol, model), from one read of the scores per forecast: the share of the scored steps below the served
    p10 and above the served p90 (0.10 each), and a 90% circular block bootstrap interval of the coverage
    (``scores.block_bootstrap_interval``: each forecast's share of its steps in the band, in order of origin,
    blocks as long as the horizon)."""
    frame = read_frame(
        engine,
        """SELECT symbol, model_name, as_of, count(*) AS steps, sum(in_band::int) AS inside,
               sum((realised_close < p10)::int) AS below, sum((realised_close > p90)::int) AS above,
               max(step) AS horizon
           FROM signal_evaluations WHERE timeframe = %(tf)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
        {"tf": timeframe},
    )
    out = {}
    for (symbol, model), g in frame.groupby(["symbol", "model_name"]):
        steps = g["steps"].to_numpy(float)
        low, high = block_bootstrap_interval(g["inside"].to_numpy(float) / steps, block=int(g["horizon"].max()))
        out[(str(symbol), str(model))] = {
            "cov_90%": f"[{low:.2f}, {high:.2f}]", "below": g["below"].sum() / steps.sum(),
            "above": g["above"].sum() / steps.sum(),
        }  # fmt: skip
    return out


def _quarters(engine) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    frame = read_frame(
        engine,
        """SELECT symbol || ' ' || timeframe AS series, model_name AS model,
               to_char(date_trunc('quarter', as_of), 'YYYY"Q"Q') AS quarter,
               round(avg(in_band::int), 2)::text || ' (' || round(avg(in_band_raw::int), 2)::text || ')' AS cov
           FROM signal_evaluations GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
    )
    return frame.pivot(index=["series", "model"], columns="quarter", values="cov").fillna("")


if __name__ == "__main__":
    main()
