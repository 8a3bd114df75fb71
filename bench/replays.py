"""What bench/calibration.py and bench/path_scores.py share: the evaluation periods of the shipped data and their
replays in a throwaway database, exactly as production runs (forecast, calibrate, write, score as of each slot).

Daily SPY, QQQ, NVDA and WTI: a warm-up from ``--warmup-from``, then the evaluation period ``--daily-from`` →
``--daily-to``. Hourly BTCUSDT: ``--hourly-warmup`` slots, then the ``--hourly-slots`` slots up to ``--hourly-to``.
Only forecasts made in an evaluation period are scored in the benches' tables; the warm-up gives calibration (and
the ensemble's weights) the outcomes production would have.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine

from candlecast.config import Settings
from candlecast.inference.transports import LocalTransport
from candlecast.ingest.candles import ingest_candles
from candlecast.ingest.sample import load_sample_manifest
from candlecast.jobs.ensemble import ENSEMBLE_MODEL
from candlecast.jobs.replay import run_replay

DAILY = ("SPY", "QQQ", "NVDA", "WTI")
HOURLY = ("BTCUSDT",)


@dataclass(frozen=True)
class Period:
    timeframe: str
    symbols: tuple[str, ...]
    first: datetime  # the replay starts here (warm-up)
    evaluated_from: datetime  # forecasts made from here on are the ones evaluated
    last: datetime  # the last slot replayed


def utc(text: str) -> datetime:
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


def add_period_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", type=int, default=1, help="replay every N-th slot")
    parser.add_argument("--warmup-from", default="2017-04-01", help="daily replay starts here (warm-up)")
    parser.add_argument("--daily-from", default="2018-01-01", help="daily evaluation period starts here")
    parser.add_argument("--daily-to", default="2018-12-31")
    parser.add_argument("--hourly-to", default="2019-10-12T23:00", help="last hourly slot evaluated")
    parser.add_argument("--hourly-slots", type=int, default=300, help="hourly slots evaluated")
    parser.add_argument("--hourly-warmup", type=int, default=600, help="hourly warm-up slots before them")
    parser.add_argument("--no-hourly", action="store_true")
    parser.add_argument("--no-daily", action="store_true", help="hourly only (run the two halves in parallel)")


def periods(args: argparse.Namespace) -> list[Period]:
    out = []
    if not args.no_daily:
        out.append(Period("1d", DAILY, utc(args.warmup_from), utc(args.daily_from), utc(args.daily_to)))
    if not args.no_hourly:
        last = utc(args.hourly_to)
        evaluated_from = last - (args.hourly_slots - 1) * timedelta(hours=1)
        out.append(Period("1h", HOURLY, evaluated_from - args.hourly_warmup * timedelta(hours=1), evaluated_from, last))
    return out


def load_candles(settings: Settings, engine: Engine, wanted: list[Period]) -> None:
    """Ingest the shipped candles of the periods' series."""
    started = time.perf_counter()
    series = {(s, p.timeframe) for p in wanted for s in p.symbols}
    for item in load_sample_manifest(settings.sample_dir):
        if (item.symbol, item.timeframe) in series:
            ingest_candles(engine, item.path, item.symbol, item.timeframe, item.asset_class, source=item.source)
    print(f"data loaded in {time.perf_counter() - started:.0f} s")


def replay(settings: Settings, engine: Engine, models: list[str], wanted: list[Period], every: int) -> None:
    """Replay every model over every period. With the ensemble among ``models`` one replay per period runs the
    members' batches (``settings.models``), scoring and the ensemble at every slot, in production's order."""
    if ENSEMBLE_MODEL in models:
        for p in wanted:
            t0 = time.perf_counter()
            result = run_replay(
                settings, engine, p.timeframe, ENSEMBLE_MODEL, p.first, p.last, every=every, symbols=list(p.symbols),
                progress=False,
            )  # fmt: skip
            print(f"replay {'+'.join(models)} {p.timeframe} {p.first:%Y-%m-%d %H:%M} -> {p.last:%Y-%m-%d %H:%M}: "
                  f"{result.slots} slots, {result.predictions_written} ensemble forecasts, {result.symbols_failed} "
                  f"failed, {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        return
    for model in models:
        transport = LocalTransport.load(settings, model)
        try:
            for p in wanted:
                t0 = time.perf_counter()
                result = run_replay(
                    settings, engine, p.timeframe, model, p.first, p.last, every=every, symbols=list(p.symbols),
                    transport=transport, progress=False,
                )  # fmt: skip
                print(f"replay {model} {p.timeframe} {p.first:%Y-%m-%d %H:%M} -> {p.last:%Y-%m-%d %H:%M}: "
                      f"{result.slots} slots, {result.predictions_written} forecasts, {result.symbols_failed} "
                      f"failed, {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        finally:
            transport.close()
