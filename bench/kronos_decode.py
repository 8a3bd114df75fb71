"""Kronos sampling speed: our KV-cached path vs full recomputation of the window at every step.

Random weights in the shape of a published checkpoint (speed does not depend on the values), synthetic
5-minute candles, CPU by default. Both runs use the same seeds, so their paths must agree; the script
checks that and prints seconds for each and the ratio.

    .venv/bin/python bench/kronos_decode.py                 # Kronos-small, 4 series x 4 samples, 480 + 32
    .venv/bin/python bench/kronos_decode.py --production    # 23 series x 8 samples, context 392, 120 steps
    .venv/bin/python bench/kronos_decode.py --production --skip-baseline   # the baseline takes very long there
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from candlecast.models.kronos import COLUMNS, Kronos, KronosPredictor, KronosTokenizer

PUBLISHED = Path(__file__).resolve().parents[1] / "tests/fixtures/kronos-reference/published-checkpoints.json"


def synthetic_candles(n_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """A random-walk OHLCVA series on 5-minute stamps."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n_rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, n_rows)) * close
    volume = rng.lognormal(8, 0.5, n_rows)
    df = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": volume,
            "amount": volume * close,
        }
    )
    return df[list(COLUMNS)], pd.date_range("2024-06-18 09:30", periods=n_rows, freq="5min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="NeoQuasar/Kronos-small", help="a model entry of published-checkpoints.json")
    parser.add_argument("--tokenizer", default="NeoQuasar/Kronos-Tokenizer-base")
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--context", type=int, default=480, help="history candles per series")
    parser.add_argument("--pred-len", type=int, default=32)
    parser.add_argument("--max-context", type=int, default=512)
    parser.add_argument("--production", action="store_true", help="23 series x 8 samples, context 392, 120 steps")
    parser.add_argument("--skip-baseline", action="store_true", help="time only the cached path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.production:
        args.series, args.samples, args.context, args.pred_len = 23, 8, 392, 120

    if args.threads:
        torch.set_num_threads(args.threads)
    published = json.loads(PUBLISHED.read_text())
    torch.manual_seed(args.seed)
    model = Kronos(**published[args.model]["config"])
    tokenizer = KronosTokenizer(**published[args.tokenizer]["config"])
    predictor = KronosPredictor(model, tokenizer, device=args.device, max_context=args.max_context)

    frames, x_stamps, y_stamps = [], [], []
    for i in range(args.series):
        df, stamps = synthetic_candles(args.context + args.pred_len, seed=args.seed + i)
        frames.append(df.iloc[: args.context])
        x_stamps.append(stamps[: args.context])
        y_stamps.append(stamps[args.context :])

    def run(use_cache: bool) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        out = predictor.sample(
            frames, x_stamps, y_stamps, args.pred_len, sample_count=args.samples, seed=args.seed, use_kv_cache=use_cache
        )
        return time.perf_counter() - started, out.paths

    predictor.sample(frames[:1], x_stamps[:1], [y[:2] for y in y_stamps[:1]], 2, sample_count=1)  # warm-up
    print(
        f"{args.model} ({model.num_parameters():,} parameters) + {args.tokenizer}, device {args.device}, "
        f"{torch.get_num_threads()} threads: {args.series} series x {args.samples} samples, "
        f"context {args.context} + {args.pred_len} steps, max_context {args.max_context}"
    )
    cached_s, cached = run(use_cache=True)
    print(f"KV cache:       {cached_s:8.2f} s")
    if args.skip_baseline:
        return
    full_s, full = run(use_cache=False)
    print(f"full recompute: {full_s:8.2f} s")
    rel = np.abs(cached - full) / np.maximum(np.abs(full), 1e-6)
    same = np.allclose(cached, full, rtol=1e-4, atol=1e-6)
    print(f"outputs equal (same seeds): {same} (max relative difference {rel.max():.2e})")
    print(f"speed-up: {full_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
