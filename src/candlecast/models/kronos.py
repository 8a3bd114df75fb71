"""Kronos in our own code: the candle tokenizer, the autoregressive model and a sampling predictor.

Kronos (Shi et al., arXiv 2508.02739) turns each candle (open, high, low, close, volume, amount) into two
tokens with a small Transformer autoencoder around binary spherical quantisation: a coarse token ``s1`` and a
fine token ``s2``. A decoder-only Transformer predicts the next ``s1``, then the next ``s2`` given that ``s1``.

The published checkpoints (NeoQuasar/Kronos-mini, -small, -base, Kronos-Tokenizer-2k, Kronos-Tokenizer-base)
load exactly: class names, constructor arguments, ``config.json`` and state-dict keys are those of the
reference implementation (github.com/shiyu-coder/Kronos), and so is its API (``encode``/``decode``,
``decode_s1``/``decode_s2``, ``KronosPredictor.predict``/``predict_batch``). Where we differ:

- **Sample paths are kept.** ``KronosPredictor.sample`` returns every path, de-normalised, and quantiles, for
  many series of different lengths in one batch (left padding + attention masks), with seeds.
- **KV cache.** While history + generated candles fit in ``max_context``, each new candle costs one position
  through the Transformer instead of the whole window; the history is run once per series, not per sample.
- **Thread safety.** Rotary tables are computed per call from explicit positions and caches belong to the call,
  so no module changes during a forward pass: one loaded model serves many threads.
- **Strict loading.** A missing or unexpected key is an error; only recomputable buffers may be absent.
- **Seeds.** Draws use one ``torch.Generator`` per series, so a series gets the same paths alone or batched.

The sliding-window trade-off. The reference keeps the last ``max_context`` tokens; once history plus generated
candles exceed that, every step drops the oldest token and restarts rotary positions at 0, which changes every
hidden state, so no cache can be reused: such steps recompute the whole window, exactly as the reference does,
and cost as much. ``predict``/``predict_batch`` keep that behaviour (greedy outputs equal the reference's).
``sample`` by default keeps only the last ``max_context - pred_len`` candles of history, so the whole generation
stays inside the window and every step is cached: a little less history, many times faster.
``sample(..., sliding_window=True)`` uses the full history with the reference's sliding behaviour.

Shapes in comments: B batch (series or series x samples), T time, d model width, H heads, hd head width,
V vocabulary (2**bits), D codebook width (s1_bits + s2_bits).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from candlecast.errors import WeightsNotAvailableError
from candlecast.events.channels import N_CHANNELS as N_EVENT_CHANNELS
from candlecast.models.provenance import file_sha256

__all__ = [
    "COLUMNS",
    "TINY_MODEL_CONFIG",
    "TINY_TOKENIZER_CONFIG",
    "Kronos",
    "KronosPredictor",
    "KronosSamples",
    "KronosTokenizer",
    "WeightsNotAvailableError",
    "save_random_checkpoints",
]

PRICE_COLUMNS = ("open", "high", "low", "close")
COLUMNS = (*PRICE_COLUMNS, "volume", "amount")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORM_EPS = 1e-5  # added to the per-series std, as the reference does

# Small configurations for tests and examples (same shapes as the reference fixtures).
TINY_TOKENIZER_CONFIG: dict[str, Any] = {
    "d_in": 6, "d_model": 32, "n_heads": 4, "ff_dim": 64, "n_enc_layers": 3, "n_dec_layers": 3,
    "ffn_dropout_p": 0.0, "attn_dropout_p": 0.0, "resid_dropout_p": 0.0, "s1_bits": 10, "s2_bits": 10,
    "beta": 0.05, "gamma0": 1.0, "gamma": 1.1, "zeta": 0.05, "group_size": 4,
}  # fmt: skip
TINY_MODEL_CONFIG: dict[str, Any] = {
    "s1_bits": 10, "s2_bits": 10, "n_layers": 2, "d_model": 64, "n_heads": 4, "ff_dim": 128,
    "ffn_dropout_p": 0.0, "attn_dropout_p": 0.0, "resid_dropout_p": 0.0, "token_dropout_p": 0.0, "learn_te": True,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Building blocks shared by the tokenizer and the model


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 whatever the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(torch.mean(x32 * x32, dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class RotaryEmbedding(nn.Module):
    """Rotary position tables for one head width ("rotate half" pairing, base 10000).

    ``inv_freq`` is a buffer because the checkpoints store it. The cos/sin tables are computed on every call
    from explicit positions and never stored on the module: that makes position offsets (KV cache) possible
    and keeps a shared model free of mutable state.
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))

    inv_freq: Tensor  # (hd/2,), a buffer

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        # positions: (B or 1, T) integers -> cos, sin: (B or 1, 1, T, hd), broadcast over heads
        angles = positions.to(self.inv_freq.dtype)[..., None] * self.inv_freq  # (B, T, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (B, T, hd)
        return angles.cos()[:, None], angles.sin()[:, None]


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    # x: (B, H, T, hd); the two halves of a head form the rotation pairs: [a, b] -> [a cos - b sin, b cos + a sin]
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-second, first], dim=-1) * sin.to(x.dtype)


def _attention_mask(
    key_valid: Tensor | None, q_len: int, k_len: int, causal: bool, device: torch.device
) -> tuple[Tensor | None, bool]:
    """The ``(attn_mask, is_causal)`` pair for scaled_dot_product_attention.

    The queries are the last ``q_len`` of ``k_len`` positions; ``key_valid`` (B, k_len) is False at padding.
    Without padding this returns no mask, so the fused causal kernel runs as in the reference.
    """
    if key_valid is None and (q_len == k_len or q_len == 1):
        return None, causal and q_len > 1
    allowed = torch.ones(1, 1, q_len, k_len, dtype=torch.bool, device=device)
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, None, :]  # (B, 1, Tq, Tk)
    if causal:
        query_at = torch.arange(k_len - q_len, k_len, device=device)[:, None]
        key_at = torch.arange(k_len, device=device)[None, :]
        # a padded query still sees itself, so that no row of the softmax is empty (it would give NaN)
        allowed = (allowed & (key_at <= query_at)) | (key_at == query_at)
    return allowed, False


def _positions_and_validity(
    padding_mask: Tensor | None, length: int, device: torch.device
) -> tuple[Tensor, Tensor | None]:
    """Rotary positions (B or 1, T) counted from each row's first real token, and key validity (B, T)."""
    if padding_mask is None:
        return torch.arange(length, device=device)[None], None
    valid = ~padding_mask.bool()  # the reference's convention: True / 1 marks padding
    return (valid.long().cumsum(dim=1) - 1).clamp(min=0), valid


class Attention(nn.Module):
    """Multi-head attention with rotary positions: self-attention in every block, cross-attention for s2."""

    def __init__(self, d_model: int, n_heads: int, attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim)
        self.attn_dropout_p = attn_dropout_p
        self.resid_dropout = nn.Dropout(resid_dropout_p)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)

    def rotate(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        cos, sin = self.rotary(positions)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)

    def output(self, y: Tensor) -> Tensor:
        # y: (B, H, Tq, hd) -> (B, Tq, d)
        batch, _, q_len, _ = y.shape
        return self.resid_dropout(self.out_proj(y.transpose(1, 2).reshape(batch, q_len, -1)))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        # q: (B, H, Tq, hd); k, v: (B, H, Tk, hd); mask: (B or 1, 1, Tq, Tk), True = may attend
        dropout_p = self.attn_dropout_p if self.training else 0.0
        return self.output(
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal)
        )

    def forward(
        self, x: Tensor, positions: Tensor, mask: Tensor | None, causal: bool, cache: LayerCache | None = None
    ) -> Tensor:
        """Self-attention of ``x`` (B, T, d). With a cache, the first call stores the history's keys and values
        and later calls (one new position per row) attend over everything stored."""
        q, k, v = (self.split_heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        q, k = self.rotate(q, k, positions)
        if cache is None or cache.history_kt is None:
            if cache is not None:
                cache.store_history(k, v)
            return self.attend(q, k, v, mask, causal)
        cache.append(k, v)
        return self.output(cache.attend(q))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), no biases."""

    def __init__(self, d_model: int, ff_dim: int, ffn_dropout_p: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, ff_dim, bias=False)
        self.w3 = nn.Linear(d_model, ff_dim, bias=False)
        self.w2 = nn.Linear(ff_dim, d_model, bias=False)
        self.ffn_dropout = nn.Dropout(ffn_dropout_p)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + ffn(norm(x)). Always causal."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int = 1024,
        ffn_dropout_p: float = 0.0,
        attn_dropout_p: float = 0.0,
        resid_dropout_p: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = Attention(d_model, n_heads, attn_dropout_p, resid_dropout_p)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim, ffn_dropout_p)

    def forward(
        self, x: Tensor, positions: Tensor, mask: Tensor | None, causal: bool, cache: LayerCache | None = None
    ) -> Tensor:
        x = x + self.self_attn(self.norm1(x), positions, mask, causal, cache)
        return x + self.ffn(self.norm2(x))


def _run_blocks(blocks: nn.ModuleList, x: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Run a causal stack over whole sequences (B, T, d), optionally with padding."""
    positions, valid = _positions_and_validity(padding_mask, x.shape[1], x.device)
    mask, causal = _attention_mask(valid, x.shape[1], x.shape[1], True, x.device)
    for block in blocks:
        x = block(x, positions, mask, causal)
    return x


# ----------------------------------------------------------------------------------------------------------
# Checkpoints: config.json + model.safetensors, as published


class _Checkpointed(nn.Module):
    """Saving and strict loading in the published on-disk format."""

    config: dict[str, Any]  # the constructor arguments, written to config.json
    # Buffers a checkpoint may lack: the loader keeps the values computed at construction.
    RECOMPUTABLE_SUFFIXES = (".rotary.inv_freq", "tokenizer.bsq.basis", "tokenizer.bsq.group_basis")
    ADDON_PREFIXES = ("event_proj.",)  # trained on top of a base checkpoint, saved apart from it (issue 7)
    weights_sha256: str | None = None  # sha256 of the weights file ``from_pretrained`` loaded (provenance)

    def checkpoint_state(self) -> dict[str, Tensor]:
        """What a checkpoint holds: the state dict with persistent buffers, without add-ons."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.ADDON_PREFIXES)}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` (sorted keys, indent 2) and ``model.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, sort_keys=True, indent=2))
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.checkpoint_state().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        return directory

    def load_checkpoint_state(self, state: dict[str, Tensor]) -> None:
        """Load tensors strictly: every key must match by name and shape (recomputable buffers may be absent)."""
        expected = self.checkpoint_state()
        missing = sorted(k for k in expected if k not in state and not k.endswith(self.RECOMPUTABLE_SUFFIXES))
        unexpected = sorted(k for k in state if k not in expected)
        if missing or unexpected:
            raise ValueError(
                f"{type(self).__name__} checkpoint does not match the architecture: "
                f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
                f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
            )
        wrong = [
            f"{k}: file {tuple(t.shape)}, model {tuple(expected[k].shape)}"
            for k, t in state.items()
            if t.shape != expected[k].shape
        ]
        if wrong:
            raise ValueError(f"{type(self).__name__} checkpoint has tensors of the wrong shape: {wrong[:10]}")
        self.load_state_dict(state, strict=False)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        revision: str | None = None,
        *,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
    ) -> Self:
        """Load from a local folder or a Hugging Face hub id (e.g. ``"NeoQuasar/Kronos-small"``), in eval mode.

        ``revision`` (a commit, tag or branch) pins hub downloads. Raises ``WeightsNotAvailableError`` when the
        files are neither local nor downloadable (e.g. offline), ``ValueError`` when they do not match.
        """
        folder = _checkpoint_folder(source, revision, cache_dir)
        config = json.loads((folder / CONFIG_FILE).read_text())
        try:
            model = cls(**config)
        except TypeError as err:
            raise ValueError(f"{folder / CONFIG_FILE} is not a {cls.__name__} config: {err}") from err
        model.load_checkpoint_state(load_file(str(folder / WEIGHTS_FILE)))
        model.weights_sha256 = file_sha256(folder / WEIGHTS_FILE)  # once, at load: forecasts record it
        return model.to(device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _checkpoint_folder(source: str | Path, revision: str | None, cache_dir: str | Path | None) -> Path:
    """A folder with config.json and model.safetensors: ``source`` itself, or a hub snapshot of it."""
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path
    elif path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise FileNotFoundError(f"{str(source)!r} is neither a checkpoint folder nor a hub id like 'owner/name'")
    else:
        import huggingface_hub  # imported here: only hub ids need it

        try:
            folder = Path(
                huggingface_hub.snapshot_download(
                    str(source), revision=revision, cache_dir=cache_dir, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE]
                )
            )
        except (OSError, ValueError, huggingface_hub.errors.HfHubHTTPError) as err:
            raise WeightsNotAvailableError(
                f"Kronos weights {str(source)!r} (revision {revision or 'main'}) are not available: not a local "
                f"folder, and the Hugging Face hub could not provide them ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no detail'}). "
                "Download them where the hub is reachable, or pass a folder holding config.json and model.safetensors."
            ) from err
    absent = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if absent:
        raise WeightsNotAvailableError(f"checkpoint folder {folder} lacks {', '.join(absent)}")
    return folder


# ----------------------------------------------------------------------------------------------------------
# The tokenizer: candles <-> (s1, s2) tokens


def _bits_to_ids(bits: Tensor) -> Tensor:
    # bits: (..., n) signed values -> (...,) integer ids, least-significant bit first
    place = 2 ** torch.arange(bits.shape[-1], device=bits.device)
    return ((bits >= 0).long() * place).sum(dim=-1)


def _ids_to_bits(ids: Tensor, n_bits: int) -> Tensor:
    # ids: (...) -> (..., n_bits) bools, least-significant bit first
    place = 2 ** torch.arange(n_bits, device=ids.device)
    return (ids.long().unsqueeze(-1) & place) != 0


def _binary_entropy(probs: Tensor) -> Tensor:
    return -(probs * torch.log(probs + 1e-8)).sum(dim=-1)


class BinarySphericalQuantizer(nn.Module):
    """Binary spherical quantisation (Zhao et al., arXiv 2406.07548): a unit vector -> signs / sqrt(D).

    The training loss is a commitment term plus an entropy penalty that rewards confident bits (low
    per-sample entropy) and a uniform use of the codebook (high entropy of the average bit probabilities).
    """

    def __init__(self, embed_dim: int, beta: float, gamma0: float, gamma: float, zeta: float, group_size: int) -> None:
        super().__init__()
        if embed_dim % group_size:
            raise ValueError(f"codebook width {embed_dim} must be divisible by group_size {group_size}")
        self.embed_dim = embed_dim
        self.beta, self.gamma0, self.gamma, self.zeta = beta, gamma0, gamma, zeta
        self.inv_temperature = 1.0
        # Most-significant-first place values. Inference does not use them; the checkpoints store them.
        self.register_buffer("basis", 2 ** torch.arange(embed_dim - 1, -1, -1))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1))

    def forward(self, z: Tensor, collect_metrics: bool = True) -> tuple[Tensor, Tensor]:
        # z: (B, T, D) unit vectors -> quantised (B, T, D) with entries +-1/sqrt(D), and the training loss
        signs = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
        quantized = (z + (signs - z).detach()) * (1.0 / math.sqrt(self.embed_dim))  # straight-through gradient
        if not collect_metrics:
            return quantized, quantized.new_zeros(())
        commit = self.beta * ((quantized.detach() - z) ** 2).sum(dim=-1).mean()
        p_negative = torch.sigmoid(-4 * z / math.sqrt(self.embed_dim) * self.inv_temperature)  # per bit
        bit_probs = torch.stack([p_negative, 1 - p_negative], dim=-1)  # (B, T, D, 2)
        per_sample = _binary_entropy(bit_probs).sum(dim=-1).mean()
        codebook = _binary_entropy(bit_probs.reshape(-1, self.embed_dim, 2).mean(dim=0)).sum()
        penalty = self.gamma0 * per_sample - self.gamma * codebook
        return quantized, commit + self.zeta * penalty / self.inv_temperature


class BSQuantizer(nn.Module):
    """Normalises the latent, quantises it and reads token ids (s1 = first s1_bits dimensions)."""

    def __init__(
        self, s1_bits: int, s2_bits: int, beta: float, gamma0: float, gamma: float, zeta: float, group_size: int
    ) -> None:
        super().__init__()
        self.s1_bits = s1_bits
        self.bsq = BinarySphericalQuantizer(s1_bits + s2_bits, beta, gamma0, gamma, zeta, group_size)

    def forward(
        self, z: Tensor, half: bool = False, collect_metrics: bool = True
    ) -> tuple[Tensor, Tensor, Tensor | list[Tensor]]:
        quantized, loss = self.bsq(F.normalize(z, dim=-1), collect_metrics=collect_metrics)
        if half:
            ids: Tensor | list[Tensor] = [
                _bits_to_ids(quantized[..., : self.s1_bits]),
                _bits_to_ids(quantized[..., self.s1_bits :]),
            ]
        else:
            ids = _bits_to_ids(quantized)
        return loss, quantized, ids


class KronosTokenizer(_Checkpointed):
    """Candles (B, T, d_in) <-> token ids, through causal Transformer stacks around a BSQ bottleneck."""

    def __init__(
        self,
        d_in: int,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        n_enc_layers: int,
        n_dec_layers: int,
        ffn_dropout_p: float,
        attn_dropout_p: float,
        resid_dropout_p: float,
        s1_bits: int,
        s2_bits: int,
        beta: float,
        gamma0: float,
        gamma: float,
        zeta: float,
        group_size: int,
    ) -> None:
        super().__init__()
        self.config = {
            "d_in": d_in, "d_model": d_model, "n_heads": n_heads, "ff_dim": ff_dim, "n_enc_layers": n_enc_layers,
            "n_dec_layers": n_dec_layers, "ffn_dropout_p": ffn_dropout_p, "attn_dropout_p": attn_dropout_p,
            "resid_dropout_p": resid_dropout_p, "s1_bits": s1_bits, "s2_bits": s2_bits, "beta": beta,
            "gamma0": gamma0, "gamma": gamma, "zeta": zeta, "group_size": group_size,
        }  # fmt: skip
        self.d_in, self.d_model = d_in, d_model
        self.s1_bits, self.s2_bits = s1_bits, s2_bits
        self.codebook_dim = s1_bits + s2_bits

        def block() -> TransformerBlock:
            return TransformerBlock(d_model, n_heads, ff_dim, ffn_dropout_p, attn_dropout_p, resid_dropout_p)

        self.embed = nn.Linear(d_in, d_model)
        self.head = nn.Linear(d_model, d_in)
        # One block fewer than configured in each stack: that is what the published checkpoints hold.
        self.encoder = nn.ModuleList(block() for _ in range(n_enc_layers - 1))
        self.decoder = nn.ModuleList(block() for _ in range(n_dec_layers - 1))
        self.quant_embed = nn.Linear(d_model, self.codebook_dim)
        self.post_quant_embed_pre = nn.Linear(s1_bits, d_model)  # s1-only reconstruction (training)
        self.post_quant_embed = nn.Linear(self.codebook_dim, d_model)
        self.tokenizer = BSQuantizer(s1_bits, s2_bits, beta, gamma0, gamma, zeta, group_size)

    def _latent(self, x: Tensor, padding_mask: Tensor | None) -> Tensor:
        # x: (B, T, d_in) -> (B, T, D) before quantisation
        return self.quant_embed(_run_blocks(self.encoder, self.embed(x), padding_mask))

    def _reconstruct(self, z: Tensor, padding_mask: Tensor | None) -> Tensor:
        # z: (B, T, d) -> (B, T, d_in)
        return self.head(_run_blocks(self.decoder, z, padding_mask))

    def forward(
        self, x: Tensor, padding_mask: Tensor | None = None
    ) -> tuple[tuple[Tensor, Tensor], Tensor, Tensor, Tensor]:
        """Training pass: ``((s1-only reconstruction, full reconstruction), bsq_loss, quantized, ids)``."""
        loss, quantized, ids = self.tokenizer(self._latent(x, padding_mask))
        z_pre = self._reconstruct(self.post_quant_embed_pre(quantized[..., : self.s1_bits]), padding_mask)
        z = self._reconstruct(self.post_quant_embed(quantized), padding_mask)
        assert isinstance(ids, Tensor)
        return (z_pre, z), loss, quantized, ids

    def encode(self, x: Tensor, half: bool = False, padding_mask: Tensor | None = None) -> Tensor | list[Tensor]:
        """Token ids of candles (B, T, d_in): ``[s1, s2]`` (each (B, T)) if ``half``, else one (B, T) id."""
        _, _, ids = self.tokenizer(self._latent(x, padding_mask), half=half, collect_metrics=False)
        return ids

    def indices_to_bits(self, x: Tensor | Sequence[Tensor], half: bool = False) -> Tensor:
        """Ids -> quantised vectors (B, T, D) with entries +-1/sqrt(D)."""
        if half:
            s1_ids, s2_ids = x
            bits = torch.cat([_ids_to_bits(s1_ids, self.s1_bits), _ids_to_bits(s2_ids, self.s2_bits)], dim=-1)
        else:
            assert isinstance(x, Tensor)
            bits = _ids_to_bits(x, self.codebook_dim)
        return (bits.float() * 2 - 1) * (1.0 / math.sqrt(self.codebook_dim))

    def decode(self, x: Tensor | Sequence[Tensor], half: bool = False, padding_mask: Tensor | None = None) -> Tensor:
        """Ids (``[s1, s2]`` if ``half``) -> reconstructed candles (B, T, d_in), normalised."""
        return self._reconstruct(self.post_quant_embed(self.indices_to_bits(x, half)), padding_mask)


# ----------------------------------------------------------------------------------------------------------
# The autoregressive model


class HierarchicalEmbedding(nn.Module):
    """(s1, s2) ids -> one vector: both embeddings, scaled by sqrt(d), concatenated and projected."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        self.emb_s1 = nn.Embedding(2**s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2**s2_bits, d_model)
        self.fusion_proj = nn.Linear(2 * d_model, d_model)

    def forward(self, token_ids: Sequence[Tensor]) -> Tensor:
        s1_ids, s2_ids = token_ids  # (B, T) each
        scale = math.sqrt(self.d_model)
        return self.fusion_proj(torch.cat([self.emb_s1(s1_ids) * scale, self.emb_s2(s2_ids) * scale], dim=-1))


class FixedEmbedding(nn.Module):
    """A frozen sinusoidal table (``learn_te=False``), stored as ``emb.weight`` like the checkpoints."""

    def __init__(self, size: int, d_model: int) -> None:
        super().__init__()
        position = torch.arange(size).float()[:, None]
        frequency = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
        table = torch.zeros(size, d_model)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.emb = nn.Embedding(size, d_model)
        self.emb.weight = nn.Parameter(table, requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.emb(x).detach()


class TemporalEmbedding(nn.Module):
    """Sum of minute, hour, weekday, day-of-month and month embeddings of each candle's timestamp."""

    def __init__(self, d_model: int, learn_pe: bool) -> None:
        super().__init__()
        make = nn.Embedding if learn_pe else FixedEmbedding
        self.minute_embed = make(60, d_model)
        self.hour_embed = make(24, d_model)
        self.weekday_embed = make(7, d_model)
        self.day_embed = make(32, d_model)
        self.month_embed = make(13, d_model)

    def forward(self, stamp: Tensor) -> Tensor:
        # stamp: (B, T, 5) = minute, hour, weekday (Monday 0), day (1-31), month (1-12) -> (B, T, d)
        s = stamp.long()
        return (
            self.hour_embed(s[..., 1])
            + self.weekday_embed(s[..., 2])
            + self.day_embed(s[..., 3])
            + self.month_embed(s[..., 4])
            + self.minute_embed(s[..., 0])
        )


class DependencyAwareLayer(nn.Module):
    """Conditions s2 on the chosen s1: the raw s1 embedding attends over the context (always 4 heads).

    As in the reference, rotary tables are built for the *query* length and applied to queries and keys alike:
    with one query (inference) that is no rotation and the query sees the whole window; with a full-length
    query (training) both get positions 0..T-1, and attention is causal in training mode only.
    """

    def __init__(self, d_model: int, n_heads: int = 4, attn_dropout_p: float = 0.0, resid_dropout: float = 0.0) -> None:
        super().__init__()
        self.cross_attn = Attention(d_model, n_heads, attn_dropout_p, resid_dropout)
        self.norm = RMSNorm(d_model)

    def memory(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the context for single-query use: hidden (B, T, d) -> (B, 4, T, d/4) twice."""
        attn = self.cross_attn
        return attn.split_heads(attn.k_proj(hidden)), attn.split_heads(attn.v_proj(hidden))

    def step(self, hidden_last: Tensor, sibling: Tensor, memory: LayerCache) -> Tensor:
        """One query per row over the context held in ``memory``: hidden_last, sibling (N, 1, d) -> (N, 1, d)."""
        attn = self.cross_attn
        q = attn.split_heads(attn.q_proj(sibling))  # (N, 4, 1, d/4)
        return self.norm(hidden_last + attn.output(memory.attend(q)))

    def forward(self, hidden_states: Tensor, sibling_embed: Tensor, key_valid: Tensor | None = None) -> Tensor:
        # hidden_states: (B, T, d); sibling_embed: (B, Tq, d) with Tq = 1 or T -> (B, T, d)
        q_len, k_len = sibling_embed.shape[1], hidden_states.shape[1]
        attn = self.cross_attn
        q = attn.split_heads(attn.q_proj(sibling_embed))
        k, v = self.memory(hidden_states)
        if q_len == k_len:
            q, k = attn.rotate(q, k, torch.arange(q_len, device=q.device)[None])
        elif q_len != 1:
            raise ValueError(f"s1 ids must have length 1 or the context length {k_len}, got {q_len}")
        mask, causal = _attention_mask(key_valid, q_len, k_len, self.training and q_len > 1, q.device)
        return self.norm(hidden_states + attn.attend(q, k, v, mask, causal))


class DualHead(nn.Module):
    """Linear heads for the s1 logits and the (s1-conditioned) s2 logits."""

    def __init__(self, s1_bits: int, s2_bits: int, d_model: int) -> None:
        super().__init__()
        self.vocab_s1, self.vocab_s2 = 2**s1_bits, 2**s2_bits
        self.proj_s1 = nn.Linear(d_model, self.vocab_s1)
        self.proj_s2 = nn.Linear(d_model, self.vocab_s2)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_s1(x)

    def cond_forward(self, x2: Tensor) -> Tensor:
        return self.proj_s2(x2)

    def compute_loss(
        self,
        s1_logits: Tensor,
        s2_logits: Tensor,
        s1_targets: Tensor,
        s2_targets: Tensor,
        padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean of the two cross-entropies over real (non-padded) positions: ``(loss, ce_s1, ce_s2)``."""
        keep = torch.ones_like(s1_targets, dtype=torch.bool) if padding_mask is None else padding_mask == 0
        ce_s1 = F.cross_entropy(s1_logits[keep], s1_targets[keep])
        ce_s2 = F.cross_entropy(s2_logits[keep], s2_targets[keep])
        return (ce_s1 + ce_s2) / 2, ce_s1, ce_s2


class Kronos(_Checkpointed):
    """Decoder-only Transformer over (s1, s2) token pairs with time features; predicts s1, then s2 given s1."""

    def __init__(
        self,
        s1_bits: int,
        s2_bits: int,
        n_layers: int,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        ffn_dropout_p: float,
        attn_dropout_p: float,
        resid_dropout_p: float,
        token_dropout_p: float,
        learn_te: bool,
    ) -> None:
        super().__init__()
        self.config = {
            "s1_bits": s1_bits, "s2_bits": s2_bits, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
            "ff_dim": ff_dim, "ffn_dropout_p": ffn_dropout_p, "attn_dropout_p": attn_dropout_p,
            "resid_dropout_p": resid_dropout_p, "token_dropout_p": token_dropout_p, "learn_te": learn_te,
        }  # fmt: skip
        self.s1_bits, self.s2_bits, self.n_layers, self.d_model = s1_bits, s2_bits, n_layers, d_model
        self.s1_vocab_size = 2**s1_bits
        self.token_drop = nn.Dropout(token_dropout_p)
        self.embedding = HierarchicalEmbedding(s1_bits, s2_bits, d_model)
        self.time_emb = TemporalEmbedding(d_model, learn_te)
        self.transformer = nn.ModuleList(
            TransformerBlock(d_model, n_heads, ff_dim, ffn_dropout_p, attn_dropout_p, resid_dropout_p)
            for _ in range(n_layers)
        )
        self.norm = RMSNorm(d_model)
        self.dep_layer = DependencyAwareLayer(d_model)  # 4 heads whatever n_heads, as published
        self.head = DualHead(s1_bits, s2_bits, d_model)
        # Events (B, T, 20) -> embedding, added to the input (issue 7). None keeps the published keys.
        self.event_proj: nn.Linear | None = None
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.d_model**-0.5)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def attach_event_projection(self) -> nn.Linear:
        """Add the events -> embedding projection, zero-initialised so outputs are unchanged until trained."""
        proj = nn.Linear(N_EVENT_CHANNELS, self.d_model).to(self.norm.weight.device)
        nn.init.zeros_(proj.weight)
        nn.init.zeros_(proj.bias)
        self.event_proj = proj
        return proj

    def embed(
        self, s1_ids: Tensor, s2_ids: Tensor, stamp: Tensor | None = None, events: Tensor | None = None
    ) -> Tensor:
        """Input vectors (B, T, d) of token pairs, plus time features and (if attached) events."""
        x = self.embedding([s1_ids, s2_ids])
        if stamp is not None:
            x = x + self.time_emb(stamp)
        if events is not None and self.event_proj is not None:
            x = x + self.event_proj(events.to(x.dtype))
        return self.token_drop(x)

    def run_transformer(
        self,
        x: Tensor,
        positions: Tensor,
        mask: Tensor | None,
        causal: bool,
        caches: Sequence[LayerCache] | None = None,
    ) -> Tensor:
        """Blocks + final norm: (B, T, d) -> context (B, T, d)."""
        for i, block in enumerate(self.transformer):
            x = block(x, positions, mask, causal, None if caches is None else caches[i])
        return self.norm(x)

    def decode_s1(
        self,
        s1_ids: Tensor,
        s2_ids: Tensor,
        stamp: Tensor | None = None,
        padding_mask: Tensor | None = None,
        events: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(s1_logits (B, T, V), context (B, T, d))`` for token pairs (B, T) and stamps (B, T, 5)."""
        x = self.embed(s1_ids, s2_ids, stamp, events)
        positions, valid = _positions_and_validity(padding_mask, x.shape[1], x.device)
        mask, causal = _attention_mask(valid, x.shape[1], x.shape[1], True, x.device)
        context = self.run_transformer(x, positions, mask, causal)
        return self.head(context), context

    def decode_s2(self, context: Tensor, s1_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """s2 logits (B, T, V) given the context (B, T, d) and s1 ids (B, 1) or (B, T)."""
        valid = None if padding_mask is None else ~padding_mask.bool()
        return self.head.cond_forward(self.dep_layer(context, self.embedding.emb_s1(s1_ids), valid))

    def forward(
        self,
        s1_ids: Tensor,
        s2_ids: Tensor,
        stamp: Tensor | None = None,
        padding_mask: Tensor | None = None,
        use_teacher_forcing: bool = False,
        s1_targets: Tensor | None = None,
        events: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Training pass: ``(s1_logits, s2_logits)``, each (B, T, V).

        s2 is conditioned on ``s1_targets`` with teacher forcing, else on s1 drawn from the model's own s1
        distribution (torch's global RNG), as the reference's training scripts do.
        """
        s1_logits, context = self.decode_s1(s1_ids, s2_ids, stamp, padding_mask, events)
        if use_teacher_forcing:
            if s1_targets is None:
                raise ValueError("s1_targets is required when use_teacher_forcing=True")
            sibling = s1_targets
        else:
            probs = F.softmax(s1_logits.detach(), dim=-1)
            sibling = torch.multinomial(probs.reshape(-1, self.s1_vocab_size), 1).view(s1_ids.shape)
        return s1_logits, self.decode_s2(context, sibling, padding_mask)


# ----------------------------------------------------------------------------------------------------------
# Generation: sampling, KV cache, the autoregressive loop


@dataclass
class LayerCache:
    """Keys and values one attention layer has seen during a generation call; never stored on a module.

    The history is computed once per series and shared by all its samples; positions generated afterwards
    are kept per row. Rows are series-major: rows b*S .. b*S+S-1 are the S samples of series b.
    """

    history_valid: Tensor | None  # (B, P) False at padding; None when no series is padded
    tail_capacity: int
    history_kt: Tensor | None = None  # keys, transposed: (B, H, hd, P)
    history_v: Tensor | None = None  # (B, H, P, hd)
    tail_k: Tensor | None = None  # (N, H, tail_capacity, hd)
    tail_v: Tensor | None = None
    tail_length: int = 0

    def store_history(self, k: Tensor, v: Tensor) -> None:
        # laid out once here the way every later step's matmuls read them fastest
        self.history_kt, self.history_v = k.transpose(-1, -2).contiguous(), v.contiguous()

    def append(self, k: Tensor, v: Tensor) -> None:
        """Add one position per row: k, v (N, H, 1, hd)."""
        if self.tail_k is None or self.tail_v is None:
            shape = (k.shape[0], k.shape[1], self.tail_capacity, k.shape[3])
            self.tail_k, self.tail_v = k.new_empty(shape), v.new_empty(shape)
        if self.tail_length >= self.tail_capacity:
            raise RuntimeError(f"KV cache overflow: capacity {self.tail_capacity}")
        self.tail_k[:, :, self.tail_length] = k[:, :, 0]
        self.tail_v[:, :, self.tail_length] = v[:, :, 0]
        self.tail_length += 1

    def attend(self, q: Tensor) -> Tensor:
        """Softmax attention of one query per row over history + tail: q (N, H, 1, hd) -> (N, H, 1, hd)."""
        assert self.history_kt is not None and self.history_v is not None
        rows, heads, _, head_dim = q.shape
        series, history = self.history_kt.shape[0], self.history_kt.shape[3]
        samples = rows // series
        scale = 1.0 / math.sqrt(head_dim)
        # the samples of a series act as S queries against its history, read once for all of them
        q_by_series = q.view(series, samples, heads, head_dim).transpose(1, 2)  # (B, H, S, hd)
        scores = (q_by_series @ self.history_kt) * scale  # (B, H, S, P)
        if self.history_valid is not None:
            scores = scores.masked_fill(~self.history_valid[:, None, None, :], float("-inf"))
        tail = self.tail_length
        if tail:
            tail_k, tail_v = self.tail_k[:, :, :tail], self.tail_v[:, :, :tail]  # type: ignore[index]
            tail_scores = (q @ tail_k.transpose(-1, -2)) * scale  # (N, H, 1, g)
            tail_scores = tail_scores.view(series, samples, heads, tail).transpose(1, 2)  # (B, H, S, g)
            scores = torch.cat([scores, tail_scores], dim=-1)
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, H, S, P + g)
        out = weights[..., :history] @ self.history_v  # (B, H, S, hd)
        out = out.transpose(1, 2).reshape(rows, heads, 1, head_dim)
        if tail:
            tail_weights = weights[..., history:].transpose(1, 2).reshape(rows, heads, 1, tail)
            out = out + tail_weights @ tail_v
        return out


def _filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """Top-k filtering, else nucleus filtering (as in the reference, top_k > 0 disables top_p)."""
    if top_k > 0:
        kth_best = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
        return logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token once the better-ranked ones already exceed top_p; the best token always stays
        drop_sorted = torch.zeros_like(cumulative, dtype=torch.bool)
        drop_sorted[..., 1:] = cumulative[..., :-1] > top_p
        return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


@dataclass(frozen=True)
class _Sampler:
    """Temperature + top-k/top-p sampling; one generator per series (rows are series-major) or the global RNG."""

    temperature: float
    top_k: int
    top_p: float
    generators: list[torch.Generator] | None

    def draw(self, logits: Tensor) -> Tensor:
        # logits: (N, V) -> ids (N,)
        probs = F.softmax(_filter_logits(logits.float() / self.temperature, self.top_k, self.top_p), dim=-1)
        if self.generators is None:
            return torch.multinomial(probs, 1)[:, 0]
        per_series = probs.chunk(len(self.generators))
        draws = [torch.multinomial(p, 1, generator=g) for p, g in zip(per_series, self.generators, strict=True)]
        return torch.cat(draws)[:, 0]


def _window(pads: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
    """Rotary positions and key validity for buffer columns [start, stop) of right-aligned rows.

    Row b holds real tokens from column ``pads[b]``; inside the window its positions restart at 0 at
    ``max(pads[b], start)``, like the reference's window. Validity is None when no row has padding there.
    """
    cols = torch.arange(start, stop, device=pads.device)
    row_start = pads.clamp(min=start)[:, None]  # (B, 1)
    valid = cols[None] >= row_start  # (B, T)
    positions = (cols[None] - row_start).clamp(min=0)
    return positions, (None if bool(valid.all()) else valid)


@dataclass
class _Rows:
    """Per-row generation state, right-aligned: row b is padding before column pads[b]."""

    s1: Tensor  # (N, P + pred_len) token ids: history, then generated
    s2: Tensor
    stamps: Tensor  # (N, P + pred_len, 5)
    events: Tensor | None  # (N, P + pred_len, 20)
    pads: Tensor  # (N,)

    def repeat(self, times: int) -> _Rows:
        """Each row ``times`` times in a row (series-major)."""

        def rep(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.repeat_interleave(times, dim=0)

        return _Rows(rep(self.s1), rep(self.s2), rep(self.stamps), rep(self.events), rep(self.pads))  # type: ignore[arg-type]

    def embed(self, model: Kronos, cols: slice) -> Tensor:
        events = None if self.events is None else self.events[:, cols]
        return model.embed(self.s1[:, cols], self.s2[:, cols], self.stamps[:, cols], events)  # (N, T, d)


def _generate(
    model: Kronos,
    tokenizer: KronosTokenizer,
    x: Tensor,
    stamps: Tensor,
    events: Tensor | None,
    pads: Tensor,
    pred_len: int,
    max_context: int,
    samples: int,
    sampler: _Sampler,
    use_cache: bool,
) -> Tensor:
    """Sample ``samples`` continuations of each series. Returns decoded candles (B, samples, pred_len, d_in).

    x: (B, P, d_in) normalised history, right-aligned (row b is padding before column pads[b]);
    stamps: (B, P + pred_len, 5) and events: (B, P + pred_len, 20) cover the history then the horizon.
    With ``use_cache`` the history runs once per series, rows are then replicated per sample (series-major)
    and each step inside the window feeds one position. Once the window slides, or without cache, every
    step recomputes the whole window from scratch, as the reference does.
    """
    n_series, history, _ = x.shape
    total = history + pred_len
    _, valid = _window(pads, 0, history)
    s1_ids, s2_ids = tokenizer.encode(x, half=True, padding_mask=None if valid is None else ~valid)  # (B, P)
    s1 = torch.zeros(n_series, total, dtype=torch.long, device=x.device)
    s2 = torch.zeros_like(s1)
    s1[:, :history], s2[:, :history] = s1_ids, s2_ids
    rows = _Rows(s1, s2, stamps, events, pads)
    if not use_cache:
        rows = rows.repeat(samples)  # the reference replicates the series before anything else
    caches: list[LayerCache] | None = None  # one per Transformer block
    memory: LayerCache | None = None  # the context, for the s2 cross-attention
    for step in range(pred_len):
        stop = history + step  # known tokens: buffer columns [0, stop)
        start = max(0, stop - max_context)
        if caches is not None and memory is not None and start == 0:
            # inside the window with a cache: feed only the newest token
            positions = (stop - 1 - rows.pads).clamp(min=0)[:, None]  # (N, 1)
            context = model.run_transformer(rows.embed(model, slice(stop - 1, stop)), positions, None, False, caches)
            memory.append(*model.dep_layer.memory(context))  # (N, 1, d) -> one more context position
        else:
            # first step, or the window slides: run the whole window, positions from 0
            positions, valid = _window(rows.pads, start, stop)
            mask, causal = _attention_mask(valid, stop - start, stop - start, True, x.device)
            caching = use_cache and start == 0
            caches = [LayerCache(valid, pred_len - 1) for _ in range(model.n_layers)] if caching else None
            context = model.run_transformer(rows.embed(model, slice(start, stop)), positions, mask, causal, caches)
            memory = LayerCache(valid, pred_len - 1)  # the last generated token is never fed back
            memory.store_history(*model.dep_layer.memory(context))
        hidden_last = context[:, -1:]  # (N, 1, d)
        if hidden_last.shape[0] != n_series * samples:  # from here on, one row per (series, sample)
            rows = rows.repeat(samples)
            hidden_last = hidden_last.repeat_interleave(samples, dim=0)
        s1_next = sampler.draw(model.head(hidden_last[:, 0]))  # (N,)
        sibling = model.embedding.emb_s1(s1_next[:, None])  # (N, 1, d)
        s2_logits = model.head.cond_forward(model.dep_layer.step(hidden_last, sibling, memory))  # (N, 1, V)
        rows.s1[:, stop], rows.s2[:, stop] = s1_next, sampler.draw(s2_logits[:, 0])

    # Decode the last max_context tokens (history + generated) as the reference does; keep the horizon.
    caches = memory = None  # free the caches before the decoder's activations are allocated
    start = max(0, total - max_context)
    _, valid = _window(rows.pads, start, total)
    decoded = tokenizer.decode(
        [rows.s1[:, start:], rows.s2[:, start:]], half=True, padding_mask=None if valid is None else ~valid
    )  # (N, W, d_in)
    return decoded[:, -pred_len:].reshape(n_series, samples, pred_len, -1)


# ----------------------------------------------------------------------------------------------------------
# The predictor: DataFrames in, forecasts out


@dataclass(frozen=True)
class KronosSamples:
    """Sampled forecast paths of several series, de-normalised, and their quantiles."""

    paths: np.ndarray  # (series, samples, pred_len, 6) float32, columns COLUMNS
    quantiles: np.ndarray  # (series, len(levels), pred_len, 6) float32
    levels: tuple[float, ...]
    timestamps: list[pd.DatetimeIndex]  # the forecast timestamps of each series
    seeds: tuple[int, ...]  # the seed used for each series (reuse them to reproduce the draws)
    columns: tuple[str, ...] = field(default=COLUMNS)

    @property
    def mean(self) -> np.ndarray:
        """Mean path per series: (series, pred_len, 6)."""
        return self.paths.mean(axis=1)


@dataclass
class _Series:
    """One series ready for the model."""

    x: np.ndarray  # (L, 6) normalised, clipped
    mean: np.ndarray  # (6,)
    std: np.ndarray  # (6,)
    x_stamp: np.ndarray  # (L, 5)
    y_stamp: np.ndarray  # (pred_len, 5)
    y_index: pd.DatetimeIndex
    events: np.ndarray | None  # (L + pred_len, 20)

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        return values * (self.std + NORM_EPS) + self.mean


def _as_datetime_index(values: Any, name: str) -> pd.DatetimeIndex:
    try:
        return pd.DatetimeIndex(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be timestamps (Series, DatetimeIndex or array): {err}") from err


def _time_features(index: pd.DatetimeIndex) -> np.ndarray:
    # (T, 5): minute, hour, weekday, day, month
    return np.stack([index.minute, index.hour, index.weekday, index.day, index.month], axis=1).astype(np.float32)


def _default_device() -> str:
    if torch.cuda.is_available():
        return "cuda:0"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class KronosPredictor:
    """Forecasts from candle DataFrames with a Kronos model and tokenizer (the reference's interface, plus
    ``sample``). Both modules are moved to ``device`` and put in eval mode. Calls may run in parallel threads.

    ``bf16_autocast=True`` runs the networks under bfloat16 autocast (CUDA only); default is float32.
    """

    def __init__(
        self,
        model: Kronos,
        tokenizer: KronosTokenizer,
        device: str | torch.device | None = None,
        max_context: int = 512,
        clip: float = 5,
        *,
        bf16_autocast: bool = False,
    ) -> None:
        self.device = torch.device(device if device is not None else _default_device())
        if bf16_autocast and self.device.type != "cuda":
            raise ValueError(f"bf16_autocast needs a CUDA device, got device={self.device}")
        if max_context < 2:
            raise ValueError(f"max_context must be at least 2, got {max_context}")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer.to(self.device).eval()
        self.max_context = max_context
        self.clip = clip
        self.bf16_autocast = bf16_autocast

    # --- the reference's interface -------------------------------------------------------------------

    def predict(
        self,
        df: pd.DataFrame,
        x_timestamp: Any,
        y_timestamp: Any,
        pred_len: int,
        T: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.9,
        sample_count: int = 1,
        verbose: bool = True,
        use_kv_cache: bool = True,
    ) -> pd.DataFrame:
        """Mean of ``sample_count`` sampled paths for one series, indexed by ``y_timestamp``.

        Same semantics as the reference: the whole history is tokenised, the window slides past
        ``max_context``, paths are averaged in normalised space. ``verbose`` is accepted and ignored.
        """
        return self.predict_batch(
            [df], [x_timestamp], [y_timestamp], pred_len, T, top_k, top_p, sample_count, verbose, use_kv_cache
        )[0]

    def predict_batch(
        self,
        df_list: Sequence[pd.DataFrame],
        x_timestamp_list: Sequence[Any],
        y_timestamp_list: Sequence[Any],
        pred_len: int,
        T: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.9,
        sample_count: int = 1,
        verbose: bool = True,
        use_kv_cache: bool = True,
    ) -> list[pd.DataFrame]:
        """``predict`` for many series in one batch; unlike the reference, histories may differ in length."""
        del verbose
        series = self._prepare_all(df_list, x_timestamp_list, y_timestamp_list, pred_len, None, keep=None)
        sampler = self._sampler(T, top_k, top_p, None)
        normalised = self._run(series, pred_len, sample_count, sampler, use_kv_cache)  # (B, S, pred_len, 6)
        means = normalised.mean(axis=1)  # averaged before de-normalising, as the reference does
        return [
            pd.DataFrame(s.denormalise(m), columns=list(COLUMNS), index=s.y_index)
            for s, m in zip(series, means, strict=True)
        ]

    # --- beyond the reference --------------------------------------------------------------------------

    def sample(
        self,
        dfs: Sequence[pd.DataFrame],
        x_timestamps: Sequence[Any],
        y_timestamps: Sequence[Any],
        pred_len: int,
        *,
        sample_count: int = 8,
        T: float = 1.0,
        top_k: int = 0,
        top_p: float = 0.9,
        quantile_levels: Sequence[float] = (0.1, 0.5, 0.9),
        seed: int | Sequence[int] | None = None,
        sliding_window: bool = False,
        events: Sequence[np.ndarray] | None = None,
        use_kv_cache: bool = True,
    ) -> KronosSamples:
        """All ``sample_count`` paths of every series (de-normalised) and their quantiles.

        dfs, x_timestamps, y_timestamps: one entry per series; histories may differ in length.
        seed: an int seeds series i with ``seed + i``; a sequence gives each series its own seed, so a series
            draws the same paths alone or in any batch; None draws seeds from torch's global RNG (see
            ``KronosSamples.seeds``).
        sliding_window: False keeps the last ``max_context - pred_len`` candles of history (every step cached);
            True keeps the full history and slides the window like the reference (slower past the window).
        events: optional per-series arrays (len(df) + pred_len, 20), history rows then horizon rows; used only
            by a model with an event projection attached.
        use_kv_cache: False recomputes the window at every step (the reference's cost; for benchmarks).
        """
        levels = tuple(float(q) for q in quantile_levels)
        if not levels or any(not 0.0 < q < 1.0 for q in levels) or list(levels) != sorted(set(levels)):
            raise ValueError(f"quantile_levels must be increasing values in (0, 1), got {quantile_levels}")
        if not isinstance(dfs, Sequence) or isinstance(dfs, pd.DataFrame):
            raise ValueError("dfs must be a list of DataFrames, one per series")
        keep = None
        if not sliding_window:
            keep = self.max_context - pred_len
            if keep < 1:
                raise ValueError(f"pred_len ({pred_len}) must be smaller than max_context ({self.max_context})")
        series = self._prepare_all(dfs, x_timestamps, y_timestamps, pred_len, events, keep=keep)
        seeds = self._seeds(seed, len(series))
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        sampler = self._sampler(T, top_k, top_p, generators)
        normalised = self._run(series, pred_len, sample_count, sampler, use_kv_cache)
        paths = np.stack([s.denormalise(n) for s, n in zip(series, normalised, strict=True)]).astype(np.float32)
        quantiles = np.quantile(paths, levels, axis=1).transpose(1, 0, 2, 3).astype(np.float32)
        return KronosSamples(
            paths=paths,
            quantiles=quantiles,
            levels=levels,
            timestamps=[s.y_index for s in series],
            seeds=tuple(seeds),
        )

    # --- internals -------------------------------------------------------------------------------------

    @staticmethod
    def _seeds(seed: int | Sequence[int] | None, n_series: int) -> list[int]:
        if seed is None:
            return [int(s) for s in torch.randint(0, 2**62, (n_series,))]
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(n_series)]
        seeds = [int(s) for s in seed]
        if len(seeds) != n_series:
            raise ValueError(f"seed must be an int or one int per series ({n_series}), got {len(seeds)}")
        return seeds

    @staticmethod
    def _sampler(T: float, top_k: int, top_p: float, generators: list[torch.Generator] | None) -> _Sampler:
        if not T > 0:
            raise ValueError(f"T (temperature) must be positive, got {T}")
        if int(top_k) != top_k or top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer, got {top_k}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        return _Sampler(float(T), int(top_k), float(top_p), generators)

    def _prepare_all(
        self,
        dfs: Sequence[pd.DataFrame],
        x_timestamps: Sequence[Any],
        y_timestamps: Sequence[Any],
        pred_len: int,
        events: Sequence[np.ndarray] | None,
        keep: int | None,
    ) -> list[_Series]:
        if not isinstance(pred_len, int | np.integer) or pred_len < 1:
            raise ValueError(f"pred_len must be a positive integer, got {pred_len!r}")
        if not (len(dfs) == len(x_timestamps) == len(y_timestamps)) or len(dfs) == 0:
            raise ValueError(
                "dfs, x_timestamps and y_timestamps must be non-empty and of equal length, got "
                f"{len(dfs)}, {len(x_timestamps)}, {len(y_timestamps)}"
            )
        if events is not None and len(events) != len(dfs):
            raise ValueError(f"events must have one array per series ({len(dfs)}), got {len(events)}")
        return [
            self._prepare(i, df, xt, yt, int(pred_len), None if events is None else events[i], keep)
            for i, (df, xt, yt) in enumerate(zip(dfs, x_timestamps, y_timestamps, strict=True))
        ]

    def _prepare(
        self,
        i: int,
        df: pd.DataFrame,
        x_timestamp: Any,
        y_timestamp: Any,
        pred_len: int,
        events: np.ndarray | None,
        keep: int | None,
    ) -> _Series:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"df[{i}] must be a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in PRICE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"df[{i}] lacks price columns {missing}")
        if len(df) == 0:
            raise ValueError(f"df[{i}] has no rows")
        df = df.copy()
        if "volume" not in df.columns:  # the reference's fill rules
            df["volume"] = 0.0
            df["amount"] = 0.0
        if "amount" not in df.columns:
            df["amount"] = df["volume"] * df[list(PRICE_COLUMNS)].mean(axis=1)
        if df[list(COLUMNS)].isnull().to_numpy().any():
            raise ValueError(f"df[{i}] contains NaN in {list(COLUMNS)}")
        x_index = _as_datetime_index(x_timestamp, f"x_timestamp[{i}]")
        y_index = _as_datetime_index(y_timestamp, f"y_timestamp[{i}]")
        if len(x_index) != len(df):
            raise ValueError(f"x_timestamp[{i}] has {len(x_index)} entries for {len(df)} rows of df[{i}]")
        if len(y_index) != pred_len:
            raise ValueError(f"y_timestamp[{i}] has {len(y_index)} entries, pred_len is {pred_len}")
        if events is not None:
            events = np.asarray(events, dtype=np.float32)
            if events.shape != (len(df) + pred_len, N_EVENT_CHANNELS):
                raise ValueError(
                    f"events[{i}] must have shape ({len(df) + pred_len}, {N_EVENT_CHANNELS}) "
                    f"(history rows, then horizon rows), got {events.shape}"
                )
        if keep is not None and len(df) > keep:
            df, x_index = df.iloc[-keep:], x_index[-keep:]
            events = None if events is None else events[-(keep + pred_len) :]
        x = df[list(COLUMNS)].to_numpy().astype(np.float32)
        mean, std = np.mean(x, axis=0), np.std(x, axis=0)
        x = np.clip((x - mean) / (std + NORM_EPS), -self.clip, self.clip)
        return _Series(x, mean, std, _time_features(x_index), _time_features(y_index), y_index, events)

    def _run(
        self, series: list[_Series], pred_len: int, sample_count: int, sampler: _Sampler, use_cache: bool
    ) -> np.ndarray:
        """Normalised decoded paths (B, S, pred_len, 6) for prepared series, padded into one batch."""
        if not isinstance(sample_count, int | np.integer) or sample_count < 1:
            raise ValueError(f"sample_count must be a positive integer, got {sample_count!r}")
        history = max(len(s.x) for s in series)
        n = len(series)
        x = np.zeros((n, history, len(COLUMNS)), dtype=np.float32)
        stamps = np.zeros((n, history + pred_len, 5), dtype=np.float32)
        with_events = any(s.events is not None for s in series)
        events = np.zeros((n, history + pred_len, N_EVENT_CHANNELS), dtype=np.float32) if with_events else None
        pads = []
        for b, s in enumerate(series):
            pad = history - len(s.x)
            pads.append(pad)
            x[b, pad:] = s.x
            stamps[b, pad:history] = s.x_stamp
            stamps[b, history:] = s.y_stamp
            if events is not None and s.events is not None:
                events[b, pad:] = s.events
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.bf16_autocast else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            paths = _generate(
                self.model,
                self.tokenizer,
                torch.from_numpy(x).to(self.device).clamp(-self.clip, self.clip),
                torch.from_numpy(stamps).to(self.device),
                None if events is None else torch.from_numpy(events).to(self.device),
                torch.tensor(pads, device=self.device),
                pred_len,
                self.max_context,
                int(sample_count),
                sampler,
                use_cache,
            )
        return paths.float().cpu().numpy()


def save_random_checkpoints(
    directory: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a randomly initialised Kronos and tokenizer in the published format, for tests and benchmarks.

    Returns ``(directory / "model", directory / "tokenizer")``; defaults are the tiny configs. The global
    torch RNG is left as it was.
    """
    directory = Path(directory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Kronos(**(model_config or TINY_MODEL_CONFIG))
        tokenizer = KronosTokenizer(**(tokenizer_config or TINY_TOKENIZER_CONFIG))
    return model.save_pretrained(directory / "model"), tokenizer.save_pretrained(directory / "tokenizer")
