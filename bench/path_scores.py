"""Touch probabilities of the sample paths, scored like forecasts, on the shipped data (docs/paths.md).

In a throwaway database the shipped candles of SPY, QQQ, NVDA and WTI (daily) and BTCUSDT (hourly) are loaded and
each model is replayed slot by slot with ``candlecast.jobs.replay.run_replay`` exactly as production runs (forecast,
calibrate, write, score as of the slot; the scoring pass grades the touch questions of every forecast whose
horizon has passed, ``jobs.touches``). Then everything is scored as of the end of the data, the grades of
warm-up forecasts are dropped, and per (model, timeframe) the graded questions (levels ±1, ±2, ±3 random-walk
standard deviations over the horizon from the last close) are summarised with ``paths.touch_scores``:

- ``brier``: fair Brier score of the paths' touch probabilities; ``brier_rw``: the random walk's (reflection
  principle) on the same questions; ``skill`` = 1 - brier / brier_rw; ``dm_p``: Diebold–Mariano p-value (per
  origin, HAC with horizon - 1 lags); ``verdict`` as on the evaluation page (30 forecasts, alpha 0.05);
- ``rel`` / ``res`` / ``unc``: Murphy's decomposition over 10 bins; ``touched``: base rate; ``basis``: questions
  judged on highs/lows (``ohlc``) or closes;
- the reliability table per model (mean predicted, observed frequency, count per bin) and, per ``k``, the mean
  predicted probability of the model and of the random walk against the observed touch frequency.

Defaults as ``bench/calibration.py``: daily evaluation 2018-01-01 → 2018-12-31 after a warm-up from 2017-04-01 (30
steps), hourly evaluation of the 300 slots up to 2019-10-12 23:00 after 600 warm-up slots (120 steps), 32 paths.

    PYTHONPATH=src .venv/bin/python bench/path_scores.py [--models baseline,garch] [--every 1] [--no-hourly]
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
from candlecast.gateway.payloads.track import verdict
from candlecast.jobs.scoring import run_scoring
from candlecast.paths import TOUCH_GRID, touch_scores
from candlecast.store import create_engine_for
from candlecast.store.db import temporary_database
from candlecast.store.path_evaluations import graded_touches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="baseline,garch")
    add_period_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    load = os.getloadavg()
    print(f"load average at start (1, 5, 15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
    settings = Settings(models=args.models)
    models = settings.model_names()
    with temporary_database(prefix="candlecast_bench") as url:
        engine = create_engine_for(url)
        wanted = periods(args)
        load_candles(settings, engine, wanted)
        replay(settings, engine, models, wanted, args.every)
        rows, tables = [], []
        for p in wanted:
            timeframe, evaluated_from = p.timeframe, p.evaluated_from
            t0 = time.perf_counter()
            final = run_scoring(settings, engine, timeframe, as_of=datetime(2030, 1, 1, tzinfo=UTC), refresh=False)
            print(f"final scoring {timeframe}: {final.touch_questions} touch questions of {final.touch_forecasts} "
                  f"forecasts graded, {final.touch_skipped} skipped, {time.perf_counter() - t0:.0f} s")  # fmt: skip
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "DELETE FROM path_evaluations WHERE timeframe = %(tf)s AND as_of < %(start)s",
                    {"tf": timeframe, "start": evaluated_from},
                )
            for g in graded_touches(engine, timeframe=timeframe):
                score = touch_scores(
                    g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max())
                )
                rows.append({
                    "model": g.model_name, "tf": timeframe, "fcst": score.forecasts, "questions": score.questions,
                    "brier": score.brier, "brier_plain": score.brier_plain, "brier_rw": score.brier_rw,
                    "skill": score.skill, "dm_p": score.dm_pvalue,
                    "verdict": verdict(score.forecasts, score.skill, score.dm_pvalue, 30, 0.05),
                    "rel": score.decomposition["reliability"], "res": score.decomposition["resolution"],
                    "unc": score.decomposition["uncertainty"], "touched": score.base_rate,
                    "basis": " ".join(f"{u}:{n}" for u, n in g.uses.items()),
                })  # fmt: skip
                table = pd.DataFrame(score.reliability)
                table = table[table["count"] > 0]
                table.insert(0, "model", f"{g.model_name} {timeframe}")
                tables.append(table)
                per_k = []
                for kk in TOUCH_GRID:
                    m = g.k == kk
                    per_k.append(f"k={kk:+d}: p {g.p_touch[m].mean():.3f} rw {g.p_touch_rw[m].mean():.3f} "
                                 f"obs {g.touched[m].mean():.3f}")  # fmt: skip
                print(f"{g.model_name} {timeframe} per level: " + "; ".join(per_k))
        engine.dispose()
    pd.set_option("display.width", 240)
    pd.set_option("display.max_columns", 24)
    print("\nTouch questions of the forecasts of the evaluation period:")
    print(pd.DataFrame(rows).round({"brier": 4, "brier_plain": 4, "brier_rw": 4, "skill": 3, "dm_p": 3,
                                    "rel": 4, "res": 4, "unc": 4, "touched": 3}).to_string(index=False))  # fmt: skip
    print("\nReliability (bins of the predicted touch probability):")
    print(pd.concat(tables).round(3).to_string(index=False))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average (1, 5, 15 min): "
          "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))  # fmt: skip


if __name__ == "__main__":
    main()
