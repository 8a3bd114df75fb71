"""Chronos-2 behind the ``Forecaster`` interface: loading by hub id or local folder, covariates, and the model's
own quantiles with paths rebuilt from them.

Chronos-2 (``chronos-forecasting``'s ``Chronos2Pipeline``) forecasts quantiles, never samples: for each horizon
step it gives the value at every level of its quantile head (21 for the published model: 0.01, 0.05, 0.10 …
0.90, 0.95, 0.99). This module

- sends the close as the target (univariate; OHLC as a multivariate target was not measured, so it is not
  used);
- sends the event tensor as covariates: each channel that carries anything in the series' window is a past
  covariate, and the channels known in advance (release flags, FOMC/CPI countdowns) are also known-future
  covariates, read from ``future_events``;
- returns the model's own quantiles: its knots, sorted at every step (the head can cross), read at the
  requested levels by linear interpolation; levels outside the head's range take its end knots, as chronos
  does;
- rebuilds ``sample_count`` paths from the same quantile function: *comonotone* paths, one uniform level per
  path read at every step. Their per-step marginals are the model's; their joint behaviour across steps is an
  assumption (perfect correlation), not the model's, so ``gives_samples`` is False. docs/chronos2.md says what
  the paths can and cannot be used for.

Every series is its own task (no cross-learning), so a series' forecast depends only on its own data and
seed, never on its batch-mates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from candlecast.config import ModelSpec
from candlecast.errors import WeightsNotAvailableError
from candlecast.events import channels as ch
from candlecast.models.base import N_EVENT_CHANNELS, Forecaster, ModelInfo, SamplePaths, SeriesInput
from candlecast.models.kronos_forecaster import weights_version
from candlecast.models.provenance import file_sha256

if TYPE_CHECKING:
    from chronos import Chronos2Pipeline

__all__ = [
    "HUB_ID",
    "KNOWN_AHEAD_CHANNELS",
    "Chronos2Forecaster",
    "chronos_input",
    "checkpoint_folder",
    "comonotone_levels",
    "quantile_paths",
]

HUB_ID = "amazon/chronos-2"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PIPELINE_CLASS = "Chronos2Pipeline"

# Event channels whose horizon rows are known in advance (docs/events.md, "Future rows"): release flags come
# from the schedule, FOMC/CPI countdowns from the scheduled dates. Surprises, the hawkish score and the leader
# channels are not known ahead (they are 0 in ``future_events``), so they are past-only covariates.
KNOWN_AHEAD_CHANNELS: frozenset[int] = frozenset(
    {
        *ch.FLAG_CHANNELS.values(),
        ch.DAYS_TO_FOMC_SIN,
        ch.DAYS_TO_FOMC_COS,
        ch.DAYS_TO_CPI_SIN,
        ch.DAYS_TO_CPI_COS,
    }
)

Schema = tuple[tuple[str, ...], tuple[str, ...]]  # (past covariate names, known-future covariate names)


class Chronos2Forecaster(Forecaster):
    """A ``Chronos2Pipeline`` giving each series its quantiles and comonotone paths rebuilt from them."""

    kind = "chronos2"
    gives_samples = False  # the paths are rebuilt from per-step quantiles (see the module docstring)
    gives_ohlc = False
    uses_events = True
    min_context = 2

    def __init__(
        self,
        name: str,
        pipeline: Chronos2Pipeline,
        *,
        version: str,
        max_context: int,
        parameters: int = 0,
        device: str = "cpu",
        batch_size: int = 256,
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.version = version
        self.max_context = min(max_context, int(pipeline.model_context_length))
        self.parameters = parameters
        self.device = device
        self.batch_size = batch_size  # chronos counts targets and covariates alike
        self.knot_levels = np.asarray(pipeline.quantiles, dtype=np.float64)  # (K,), increasing

    @classmethod
    def load(cls, spec: ModelSpec, device: str = "cpu", cache_dir: str | Path | None = None) -> Chronos2Forecaster:
        """Load ``spec.model_source`` (a hub id, default ``amazon/chronos-2``, pinned by ``spec.revision``, or a
        local folder with config.json and model.safetensors) onto ``device`` in float32.

        Raises ``WeightsNotAvailableError`` when the files are neither local nor downloadable (e.g. offline with no
        cached copy), ``ValueError`` when the folder is not a Chronos-2 checkpoint.
        """
        import torch
        from chronos import Chronos2Pipeline

        source = spec.model_source or HUB_ID
        folder, version = checkpoint_folder(source, spec.revision, cache_dir)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder / CONFIG_FILE} is not readable JSON: {exc}") from exc
        if config.get("chronos_pipeline_class") != PIPELINE_CLASS or "chronos_config" not in config:
            found = config.get("chronos_pipeline_class")
            raise ValueError(f"{folder} is not a Chronos-2 checkpoint (chronos_pipeline_class is {found!r})")
        try:
            # float32 on every device: bf16 on CPU can be 30x slower (chronos-forecasting #83), and the model is
            # small enough for float32 on a GPU.
            pipeline = Chronos2Pipeline.from_pretrained(str(folder), device_map=device, dtype=torch.float32)
        except Exception as exc:
            raise RuntimeError(f"cannot load Chronos-2 from {source!r} onto {device!r}: {exc}") from exc
        pipeline.model.eval()
        forecaster = cls(
            spec.name,
            pipeline,
            version=spec.revision or version,
            max_context=spec.max_context,
            parameters=sum(p.numel() for p in pipeline.model.parameters()),
            device=device,
        )
        forecaster.checkpoint_sha256 = {"model": file_sha256(folder / WEIGHTS_FILE)}  # once, at load
        return forecaster

    def info(self) -> ModelInfo:
        info = super().info()
        info.details["quantile_head"] = self.knot_levels.tolist()
        info.details["samples"] = "comonotone paths rebuilt from the per-step quantiles (docs/chronos2.md)"
        return info

    def _sample(
        self,
        series: list[SeriesInput],
        targets: list[pd.DatetimeIndex],
        sample_count: int,
        seeds: list[int | None],
        quantile_levels: tuple[float, ...],
    ) -> list[SamplePaths]:
        pred_len = len(targets[0])
        knots = self.knots([chronos_input(s, pred_len) for s in series], pred_len)  # each (K, H)
        levels = np.asarray(quantile_levels, dtype=np.float64)  # (Q,)
        out = []
        for k, seed in zip(knots, seeds, strict=True):
            path_levels = comonotone_levels(sample_count, np.random.default_rng(seed))  # (S,)
            out.append(
                SamplePaths(
                    close=quantile_paths(k, self.knot_levels, path_levels),  # (S, H)
                    quantiles=quantile_paths(k, self.knot_levels, levels),  # (Q, H)
                )
            )
        return out

    def knots(self, tasks: Sequence[dict[str, Any]], pred_len: int) -> list[np.ndarray]:
        """The model's quantiles of each task, shape ``(K, pred_len)``, sorted along the levels at every step.

        Tasks are sent in groups of one covariate schema (chronos needs one schema per call); as every task is
        forecast on its own, the grouping does not change any result.
        """
        groups: dict[Schema, list[int]] = {}
        for i, task in enumerate(tasks):
            groups.setdefault(_schema(task), []).append(i)
        out: list[np.ndarray | None] = [None] * len(tasks)
        for members in groups.values():
            predictions = self.pipeline.predict(
                [tasks[i] for i in members],
                prediction_length=pred_len,
                batch_size=self.batch_size,
                context_length=self.max_context,
                cross_learning=False,
            )  # one (n_variates=1, K, H) tensor per task
            for i, p in zip(members, predictions, strict=True):
                out[i] = np.sort(p[0].double().cpu().numpy(), axis=0)  # (K, H), uncrossed
        return [k for k in out if k is not None]


def chronos_input(s: SeriesInput, pred_len: int) -> dict[str, Any]:
    """One series as a Chronos-2 task: the close as target, event channels as covariates.

    A channel is sent only when it is non-zero somewhere in the window (or, known in advance, in the horizon):
    an all-zero channel says nothing and would cost a whole covariate series. A known-ahead channel is also a
    future covariate when ``future_events`` is given; everything else is past-only, its future unknown.
    Without ``events`` but with ``future_events`` the history rows are zeros ("no event"), as for Kronos.
    """
    task: dict[str, Any] = {"target": s.close.astype(np.float64)}  # (T,)
    if s.events is None and s.future_events is None:
        return task
    history = s.events if s.events is not None else np.zeros((len(s), N_EVENT_CHANNELS), dtype=np.float32)  # (T, 20)
    ahead = None if s.future_events is None else s.future_events[:pred_len]  # (H, 20)
    past: dict[str, np.ndarray] = {}
    future: dict[str, np.ndarray] = {}
    for c, name in enumerate(ch.CHANNEL_NAMES):
        known = ahead[:, c] if ahead is not None and c in KNOWN_AHEAD_CHANNELS else None  # (H,)
        if not history[:, c].any() and (known is None or not known.any()):
            continue
        past[name] = history[:, c].astype(np.float64)
        if known is not None:
            future[name] = known.astype(np.float64)
    if past:
        task["past_covariates"] = past
    if future:
        task["future_covariates"] = future
    return task


def _schema(task: dict[str, Any]) -> Schema:
    return tuple(task.get("past_covariates", ())), tuple(task.get("future_covariates", ()))


def quantile_paths(knots: np.ndarray, knot_levels: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The piecewise-linear quantile function through ``knots`` read at ``levels``, at every step.

    ``knots`` has shape ``(K, H)`` (sorted along K), ``knot_levels`` ``(K,)`` increasing, ``levels`` ``(L,)``;
    returns ``(L, H)``. Levels beyond the end knots take the end knot (chronos' own interpolation does the same).
    """
    u = np.clip(levels, knot_levels[0], knot_levels[-1])  # (L,)
    upper = np.clip(np.searchsorted(knot_levels, u, side="right"), 1, len(knot_levels) - 1)  # (L,)
    lower = upper - 1
    weight = ((u - knot_levels[lower]) / (knot_levels[upper] - knot_levels[lower]))[:, None]  # (L, 1)
    return knots[lower] * (1.0 - weight) + knots[upper] * weight  # (L, H)


def comonotone_levels(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniform levels, one per path, stratified: path order is random, and each of the ``count``
    equal slices of (0, 1) holds exactly one level (drawn uniformly inside it). Each level alone is U(0, 1)."""
    return (rng.permutation(count) + rng.random(count)) / count  # (S,)


def checkpoint_folder(source: str, revision: str | None, cache_dir: str | Path | None = None) -> tuple[Path, str]:
    """(folder with config.json and model.safetensors, version): ``source`` itself, or a hub snapshot of it.

    A local folder is versioned by the hash of its weights, a hub id by its name and snapshot commit.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        folder, version = path, weights_version(str(path))
    elif path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise WeightsNotAvailableError(
            f"Chronos-2 weights {source!r} are not available: neither a checkpoint folder nor a hub id like {HUB_ID!r}"
        )
    else:
        import huggingface_hub  # imported here: only hub ids need it

        try:
            snapshot = huggingface_hub.snapshot_download(
                source, revision=revision, cache_dir=cache_dir, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE]
            )
        except (OSError, ValueError, huggingface_hub.errors.HfHubHTTPError) as err:
            detail = str(err).splitlines()[0] if str(err) else "no detail"
            raise WeightsNotAvailableError(
                f"Chronos-2 weights {source!r} (revision {revision or 'main'}) are not available: not a local "
                f"folder, and the Hugging Face hub could not provide them ({type(err).__name__}: {detail}). "
                "Download them where the hub is reachable, or name a folder holding config.json and model.safetensors."
            ) from err
        folder = Path(snapshot)
        version = f"{source}@{folder.name[:12]}"  # hub snapshots are named by their commit
    absent = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if absent:
        raise WeightsNotAvailableError(f"Chronos-2 checkpoint folder {folder} lacks {', '.join(absent)}")
    return folder, version
