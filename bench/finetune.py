"""Fine-tune throughput: training windows per second of LoRA + event projection on CPU.

Random weights in the shape of a published checkpoint (speed does not depend on the values; the configs
come from tests/fixtures/kronos-reference/published-checkpoints.json), synthetic hourly candles with
random event rows. It times the library's own code path: windows -> tokenise (frozen tokenizer) ->
``train`` (teacher-forced cross-entropy on s1 and s2, AdamW, gradient clipping) -> the held-out loss, and
the gate's sampled forecasts.

    .venv/bin/python bench/finetune.py                                   # Kronos-mini, window 256 + 24
    .venv/bin/python bench/finetune.py --model NeoQuasar/Kronos-small --tokenizer NeoQuasar/Kronos-Tokenizer-base
    .venv/bin/python bench/finetune.py --threads 1 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from candlecast.config import FinetuneSettings
from candlecast.jobs.finetune.gate import forecast_crps
from candlecast.jobs.finetune.windows import build_windows
from candlecast.models.finetune.adapter import adapted_model, with_lora
from candlecast.models.finetune.data import CandleSeries, tokenise
from candlecast.models.finetune.train import mean_loss, train
from candlecast.models.kronos import Kronos, KronosTokenizer, _time_features

PUBLISHED = Path(__file__).resolve().parents[1] / "tests/fixtures/kronos-reference/published-checkpoints.json"


def synthetic_series(n_rows: int, seed: int) -> CandleSeries:
    """A random-walk hourly OHLCVA series with sparse event flags."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, n_rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.002, n_rows)) * close
    volume = rng.lognormal(8, 0.5, n_rows)
    values = np.column_stack(
        [open_, np.maximum(open_, close) + spread, np.minimum(open_, close) - spread, close, volume, volume * close]
    ).astype(np.float32)
    timestamps = pd.date_range("2019-01-01", periods=n_rows, freq="h", tz="UTC")
    events = np.zeros((n_rows, 20), dtype=np.float32)
    events[rng.choice(n_rows, n_rows // 200, replace=False), 1] = 1.0  # CPI-like release flags
    events[:, 14] = rng.normal(0, 0.01, n_rows)  # a leader return
    return CandleSeries("SYN", "1h", timestamps, values, _time_features(timestamps), events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="NeoQuasar/Kronos-mini", help="a model entry of published-checkpoints.json")
    parser.add_argument("--tokenizer", default="NeoQuasar/Kronos-Tokenizer-2k")
    defaults = FinetuneSettings()
    parser.add_argument("--lookback", type=int, default=defaults.lookback)
    parser.add_argument("--horizon", type=int, default=defaults.horizon)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps timed")
    parser.add_argument("--lora-rank", type=int, default=defaults.lora_rank)
    parser.add_argument("--gate-windows", type=int, default=8)
    parser.add_argument("--gate-samples", type=int, default=defaults.gate_sample_count)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    published = json.loads(PUBLISHED.read_text())
    base = Kronos(**published[args.model]["config"]).eval()
    tokenizer = KronosTokenizer(**published[args.tokenizer]["config"]).eval()
    cfg = FinetuneSettings(
        lookback=args.lookback, horizon=args.horizon, window_stride=args.horizon, batch_size=args.batch_size,
        lora_rank=args.lora_rank, epochs=1, event_oversampling=1, gate_sample_count=args.gate_samples,
    )  # fmt: skip
    n_windows = args.steps * args.batch_size
    series = synthetic_series(args.lookback + args.horizon * (n_windows + args.gate_windows), args.seed)
    windows = build_windows([series], args.lookback, args.horizon, args.horizon)
    train_windows = windows.take(np.arange(n_windows))
    gate_windows = windows.take(np.arange(n_windows, n_windows + args.gate_windows))

    peft_model = with_lora(base, cfg)
    model = adapted_model(peft_model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{args.model} ({base.num_parameters():,} parameters; {trainable:,} trainable: LoRA rank {args.lora_rank} "
        f"on {'/'.join(cfg.lora_targets)} + event projection) + {args.tokenizer}, CPU, {torch.get_num_threads()} "
        f"threads; windows of {args.lookback} + {args.horizon} candles, batch {args.batch_size}"
    )

    started = time.perf_counter()
    data = tokenise(tokenizer, train_windows, device)
    tokenise_s = time.perf_counter() - started
    print(f"tokenise (frozen tokenizer): {len(data) / tokenise_s:8.1f} windows/s ({len(data)} windows)")

    warm = tokenise(tokenizer, train_windows.take(np.arange(args.batch_size)), device)
    train(model, warm, cfg, device)  # warm-up step (allocator, kernels), not timed
    history = train(model, data, cfg, device)
    print(
        f"training (forward + backward + AdamW): {history.windows_per_second:8.1f} windows/s "
        f"({history.steps} steps, {history.seconds:.1f} s, {history.seconds / history.steps:.2f} s/step)"
    )

    started = time.perf_counter()
    mean_loss(model, data, args.batch_size, device)
    loss_s = time.perf_counter() - started
    print(f"held-out loss (teacher forced, no grad): {len(data) / loss_s:8.1f} windows/s")

    started = time.perf_counter()
    forecast_crps(model, tokenizer, gate_windows, cfg, args.lookback + args.horizon, device)
    gate_s = time.perf_counter() - started
    print(
        f"gate forecasts ({args.gate_samples} paths x {args.horizon} steps): "
        f"{len(gate_windows) / gate_s:8.2f} windows/s ({gate_s:.1f} s for {len(gate_windows)})"
    )


if __name__ == "__main__":
    main()
