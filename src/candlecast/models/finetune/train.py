"""The training objective and loop: Kronos's own next-token cross-entropy on s1 and s2, teacher forced.

For a window of W token pairs, positions 0..W-2 are the input (with their time features and event rows)
and positions 1..W-1 the targets; s2 is conditioned on the true next s1 (teacher forcing). The loss is the
mean of the two cross-entropies over every position, as ``DualHead.compute_loss`` computes it.

Measuring that loss needs care: Kronos's s2 layer attends causally only in training mode (the reference's
convention; at generation time it has a single query). ``teacher_forced_eval`` therefore switches off
dropout but keeps that one layer in training mode, so a held-out loss never sees later candles.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from candlecast.config import FinetuneSettings
from candlecast.models.finetune.data import TokenisedWindows
from candlecast.models.kronos import Kronos

__all__ = ["TrainingHistory", "epoch_order", "mean_loss", "teacher_forced_eval", "train", "window_logits"]


def window_logits(
    model: Kronos, s1: torch.Tensor, s2: torch.Tensor, stamps: torch.Tensor, events: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(s1 logits, s2 logits), each (B, W-1, V), predicting positions 1..W-1 from positions 0..W-2."""
    return model(
        s1[:, :-1],
        s2[:, :-1],
        stamps[:, :-1],
        use_teacher_forcing=True,
        s1_targets=s1[:, 1:],
        events=events[:, :-1],
    )


def _batch_loss(model: Kronos, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    s1, s2, stamps, events = batch
    s1_logits, s2_logits = window_logits(model, s1, s2, stamps, events)
    loss, _, _ = model.head.compute_loss(s1_logits, s2_logits, s1[:, 1:], s2[:, 1:])
    return loss


@contextlib.contextmanager
def teacher_forced_eval(model: Kronos) -> Iterator[None]:
    """No dropout and no gradients, with the s2 layer still causal (see the module docstring)."""
    was_training = model.training
    model.eval()
    model.dep_layer.training = True  # this module only: its causal mask; it has no dropout of its own
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def mean_loss(model: Kronos, data: TokenisedWindows, batch_size: int, device: torch.device) -> float:
    """Mean teacher-forced loss over every window of ``data`` (all windows have the same length)."""
    if len(data) == 0:
        raise ValueError("no windows to measure the loss on")
    total = 0.0
    with teacher_forced_eval(model):
        for begin in range(0, len(data), batch_size):
            index = np.arange(begin, min(begin + batch_size, len(data)))
            total += float(_batch_loss(model, data.batch(index, device))) * len(index)
    return total / len(data)


def epoch_order(has_events: np.ndarray, oversampling: int, rng: np.random.Generator) -> np.ndarray:
    """One epoch's window order: every window once, windows with events ``oversampling`` times, shuffled."""
    index = np.arange(len(has_events))
    repeats = np.where(has_events, oversampling, 1)
    return rng.permutation(np.repeat(index, repeats))


@dataclass
class TrainingHistory:
    """What the loop did: mean training loss per epoch, steps, windows seen and time."""

    epoch_losses: list[float] = field(default_factory=list)
    steps: int = 0
    windows_seen: int = 0
    seconds: float = 0.0

    @property
    def windows_per_second(self) -> float:
        return self.windows_seen / self.seconds if self.seconds > 0 else 0.0


def train(
    model: Kronos,
    data: TokenisedWindows,
    cfg: FinetuneSettings,
    device: torch.device,
    *,
    progress: bool = False,
) -> TrainingHistory:
    """Train the parameters of ``model`` that require gradients (LoRA, event projection) with AdamW.

    Each epoch visits every training window once and each window with events ``cfg.event_oversampling``
    times, in a shuffled order drawn from ``cfg.seed``; gradients are clipped to ``cfg.grad_clip``.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (expected LoRA matrices and the event projection)")
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    orders = [epoch_order(data.has_events, cfg.event_oversampling, rng) for _ in range(cfg.epochs)]
    steps_per_epoch = [-(-len(order) // cfg.batch_size) for order in orders]
    history = TrainingHistory()
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    started = time.perf_counter()
    model.train()
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("fine-tune", total=sum(steps_per_epoch), loss="-")
        for epoch, order in enumerate(orders, start=1):
            losses = []
            for begin in range(0, len(order), cfg.batch_size):
                index = order[begin : begin + cfg.batch_size]
                loss = _batch_loss(model, data.batch(index, device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                losses.append(loss.item())
                history.steps += 1
                history.windows_seen += len(index)
                bar.update(
                    task, advance=1, loss=f"{np.mean(losses[-20:]):.4f}", description=f"epoch {epoch}/{cfg.epochs}"
                )
            history.epoch_losses.append(float(np.mean(losses)))
    model.eval()
    history.seconds = time.perf_counter() - started
    return history
