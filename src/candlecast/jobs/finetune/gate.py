"""The promotion gate: a new adapter replaces the promoted one (or the base model) only if it is better on
the held-out period by both measures.

- **Validation loss**: the teacher-forced training objective over the validation windows.
- **CRPS of sampled forecasts**: for some validation windows (``gate_windows``, spread evenly), forecast
  the ``horizon`` closes after the lookback with ``gate_sample_count`` sampled paths, exactly as the
  inference service would (history event rows, horizon event rows zero), and score the realised closes
  with the CRPS of the samples, divided by the last lookback close so that every series counts alike.
  Candidate and incumbent draw with the same seeds.

Both are computed afresh for the incumbent on the same windows: an incumbent's stored metrics came from an
older held-out period and are not comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from candlecast.config import FinetuneSettings
from candlecast.events.channels import N_CHANNELS as N_EVENT_CHANNELS
from candlecast.models.finetune.data import TokenisedWindows, Windows
from candlecast.models.finetune.train import mean_loss
from candlecast.models.kronos import COLUMNS, Kronos, KronosPredictor, KronosTokenizer
from candlecast.scores import crps_from_samples

__all__ = ["GateScores", "decide", "forecast_crps", "score"]


@dataclass(frozen=True)
class GateScores:
    validation_loss: float
    crps: float  # mean over gate windows and horizon steps of CRPS(close) / last lookback close

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def forecast_crps(
    model: Kronos,
    tokenizer: KronosTokenizer,
    windows: Windows,
    cfg: FinetuneSettings,
    max_context: int,
    device: torch.device,
) -> float:
    """Mean relative CRPS of the close over ``windows`` (see the module docstring)."""
    if len(windows) == 0:
        raise ValueError("no windows to forecast")
    predictor = KronosPredictor(model, tokenizer, device=device, max_context=max_context)
    lookback, horizon = windows.lookback, windows.horizon
    dfs, x_times, y_times, events, realised, last_close = [], [], [], [], [], []
    for s, start in windows.rows:
        series = windows.series[s]
        history = slice(start, start + lookback)
        future = slice(start + lookback, start + lookback + horizon)
        dfs.append(pd.DataFrame(series.values[history], columns=list(COLUMNS)))
        x_times.append(series.timestamps[history])
        y_times.append(series.timestamps[future])
        zeros = np.zeros((horizon, N_EVENT_CHANNELS), dtype=np.float32)  # no event known beyond the as-of time
        events.append(np.concatenate([series.events[history], zeros]))
        realised.append(series.values[future, COLUMNS.index("close")])
        last_close.append(series.values[start + lookback - 1, COLUMNS.index("close")])
    scores = []
    batch = max(1, cfg.batch_size)
    for begin in range(0, len(dfs), batch):
        part = slice(begin, begin + batch)
        result = predictor.sample(
            dfs[part], x_times[part], y_times[part], horizon,
            sample_count=cfg.gate_sample_count, seed=cfg.seed + begin, events=events[part],
        )  # fmt: skip
        closes = result.paths[..., COLUMNS.index("close")]  # (B, S, H)
        for paths, observed, close0 in zip(closes, realised[part], last_close[part], strict=True):
            crps = crps_from_samples(paths.T, observed)  # one row per horizon step
            scores.append(float(np.mean(crps)) / max(abs(float(close0)), 1e-12))
    return float(np.mean(scores))


def score(
    model: Kronos,
    tokenizer: KronosTokenizer,
    validation: TokenisedWindows,
    gate_windows: Windows,
    cfg: FinetuneSettings,
    max_context: int,
    device: torch.device,
) -> GateScores:
    """Validation loss and forecast CRPS of one model (adapted or base) on the held-out period."""
    loss = mean_loss(model, validation, cfg.batch_size, device)
    crps = forecast_crps(model, tokenizer, gate_windows, cfg, max_context, device)
    return GateScores(validation_loss=loss, crps=crps)


def decide(candidate: GateScores, incumbent: GateScores, incumbent_name: str) -> tuple[bool, str]:
    """(promote?, why): promoted only when both the validation loss and the CRPS are lower."""
    loss_ok = candidate.validation_loss < incumbent.validation_loss
    crps_ok = candidate.crps < incumbent.crps
    comparison = (
        f"validation loss {candidate.validation_loss:.4f} vs {incumbent.validation_loss:.4f}, "
        f"CRPS {candidate.crps:.5f} vs {incumbent.crps:.5f} ({incumbent_name})"
    )
    if loss_ok and crps_ok:
        return True, f"promoted: beats {incumbent_name} on both: {comparison}"
    worse = [name for name, ok in (("validation loss", loss_ok), ("CRPS", crps_ok)) if not ok]
    return False, f"not promoted: no better than {incumbent_name} on {' and '.join(worse)}: {comparison}"
