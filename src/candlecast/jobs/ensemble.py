"""The ensemble job: after the base models' batch of a slot, one more forecast per instrument that combines them
(``model_name = "ensemble"``), weighted by each member's trailing fair CRPS on that instrument and timeframe.

Members
    ``ensemble.members`` (default: every configured model, ``CANDLECAST_MODELS``, but the ensemble itself). A
    symbol's members are those with a forecast made exactly at the slot, with sample paths, whose target candles
    agree with the others'; with fewer than ``ensemble.min_members`` (2) the symbol is skipped, saying why. The job
    reads stored forecasts only: it runs no model (it asks a member's capabilities, see below).

Weights (``ensemble_weights``)
    From ``store.ensemble.trailing_crps``: each member's mean fair CRPS over the steps every member of the symbol was
    scored on, of forecasts made in the ``ensemble.lookback_days_<tf>`` before the slot, whose candle had closed by
    the slot. Only outcomes realised before the slot set the weights: rewriting or scoring a later outcome (as a
    replay does) cannot change them. ``w_m ∝ mean_crps_m ** -power`` (``ensemble.power``, 2: the CRPS analogue of
    Bates–Granger inverse-MSE weights, CRPS being in price units like an absolute error), normalised to 1. Equal
    weights while fewer than ``ensemble.min_history`` forecasts have such steps.

Combination (``combine``)
    The members' *own* forecasts are combined, not the calibrated ones they serve: each member's stored paths are
    mapped back onto its raw band (``calibration.unstretch_samples``, exact from the stored served and raw bands)
    and its raw p10/p90 are used. The ensemble is then calibrated once, on its own outcomes, like any model; a
    mixture of calibrated members calibrated again over-covered on every replayed series (docs/calibration.md).

    - Every member gives samples (capability ``gives_samples``): a *mixture* of paths (the linear pool). Member
      ``m`` contributes ``w_m * M`` of the ``M`` paths (largest remainder; ``ensemble.sample_count``, default
      ``jobs.sample_count``), drawn from its own paths without replacement (seeded by slot and symbol; all of them,
      then more, when its share exceeds what it has). p10/p50/p90 are the quantiles of the mixed paths, as for
      any model. The paths are the members' own, so questions about whole paths stay meaningful.
    - Some member gives no samples (Chronos-2 stores comonotone paths rebuilt from its quantiles, which must not be
      mixed as if they were draws): *quantile averaging* (Vincentization). p10/p50/p90 are the weighted means of
      the members' own p10/p50/p90, and the stored paths are comonotone, like Chronos-2's: path ``k`` is, at every
      step, the weighted mean of the members' quantiles at level ``(k + 0.5) / M`` (read from each member's paths,
      which for Chronos-2 are its quantile function). Each step's distribution is right; the joint behaviour across
      steps is not modelled, and the row says so (``gives_samples: false``).

    A member's capability comes from its stored row (``event_context.gives_samples``, where the batch job records
    it), else from the model itself: ``GET /models`` of the inference service, or the model loaded in-process with
    ``local``. A member whose capability cannot be established is taken as giving no samples, so rebuilt paths are
    never passed off as draws.

What is stored
    ``event_context = {"ensemble": {"method", "weights", "members", "history", "excluded"}, "gives_samples",
    "seed"}``: the weights used; per member its forecast id, version, capability, paths contributed and trailing
    CRPS; the history the weights came from (rule, forecasts, steps, window); and the models left out, with why.

Calibration
    ``_finish`` is the one place the ensemble's forecasts pass through before they are written: the calibration
    every model's forecasts get in the batch job goes there too.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from candlecast.calibration import unstretch_samples
from candlecast.config import Settings
from candlecast.errors import InputError
from candlecast.inference.client import InferenceClient
from candlecast.inference.transports import LocalTransport
from candlecast.jobs.batch import BatchResult, slot_time
from candlecast.jobs.calibrate import calibrate_predictions
from candlecast.jobs.records import recorded_run
from candlecast.store.ensemble import TrailingCrps, slot_forecasts, trailing_crps
from candlecast.store.predictions import Prediction, upsert_prediction

__all__ = [
    "ENSEMBLE_MODEL",
    "METHOD_MIXTURE",
    "METHOD_QUANTILE_AVERAGE",
    "Combined",
    "Weights",
    "combine",
    "ensemble_weights",
    "member_models",
    "path_counts",
    "run_ensemble",
    "sample_capabilities",
]

log = logging.getLogger(__name__)

ENSEMBLE_MODEL = "ensemble"
METHOD_MIXTURE = "mixture"
METHOD_QUANTILE_AVERAGE = "quantile_average"
VERSION = "1"
_LEVELS = (0.1, 0.5, 0.9)


def member_models(settings: Settings) -> list[str]:
    """The models the ensemble combines: ``ensemble.members``, else every configured model (never itself)."""
    names = settings.ensemble.members if settings.ensemble.members is not None else settings.model_names()
    return [name for name in dict.fromkeys(names) if name != ENSEMBLE_MODEL]


# -- the maths -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The weight of each member and where it came from."""

    weights: dict[str, float]  # model -> weight, summing to 1
    rule: str  # 'crps' or 'equal'
    reason: str  # why this rule, in words
    forecasts: int  # forecasts scored on the common outcomes (0 without history)
    steps: int


def ensemble_weights(
    members: Sequence[str], history: Mapping[str, TrailingCrps], min_history: int, power: float
) -> Weights:
    """Weights ``∝ mean_crps ** -power`` from each member's trailing CRPS on the outcomes common to all members
    (``history``: model -> its ``TrailingCrps``); equal while fewer than ``min_history`` forecasts were scored on
    them (or a member has no usable CRPS)."""
    members = list(members)
    equal = {m: 1.0 / len(members) for m in members}
    known = [history.get(m) for m in members]
    forecasts = min((h.forecasts if h is not None else 0) for h in known)
    steps = min((h.steps if h is not None else 0) for h in known)
    if forecasts < min_history:
        reason = f"history short: {forecasts} forecasts scored on outcomes common to all members (< {min_history})"
        return Weights(equal, "equal", reason, forecasts, steps)
    crps = np.array([h.mean_crps for h in known if h is not None], dtype=np.float64)
    if not (np.isfinite(crps).all() and (crps > 0).all()):
        return Weights(equal, "equal", "a member's trailing CRPS is zero or not finite", forecasts, steps)
    raw = (crps / crps.min()) ** -power  # scaled first: no overflow for tiny CRPS
    weights = raw / raw.sum()
    reason = f"mean fair CRPS ** -{power:g} over {forecasts} forecasts ({steps} steps) common to all members"
    return Weights(dict(zip(members, weights.tolist(), strict=True)), "crps", reason, forecasts, steps)


def path_counts(weights: Sequence[float] | np.ndarray, total: int) -> np.ndarray:
    """``total`` paths shared in proportion to ``weights`` (largest remainder; ties go to the earlier member)."""
    raw = np.asarray(weights, dtype=np.float64) * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


@dataclass(frozen=True)
class Combined:
    """An ensemble forecast's numbers."""

    method: str  # METHOD_MIXTURE or METHOD_QUANTILE_AVERAGE
    p10: np.ndarray  # (H,)
    p50: np.ndarray
    p90: np.ndarray
    samples: np.ndarray  # (M, H) float32
    paths: dict[str, int]  # mixture: paths each member contributed (empty for quantile averaging)


def combine(
    paths: Mapping[str, np.ndarray],
    bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    weights: Mapping[str, float],
    gives_samples: Mapping[str, bool | None],
    total: int,
    seed: int,
) -> Combined:
    """Combine the members' paths (model -> (S_m, H)) by their weights into ``total`` paths: a mixture when every
    member gives samples, else quantile averaging of the members' own p10/p50/p90 (``bands``) and of their
    quantile functions (see the module docstring)."""
    members = list(weights)
    w = np.array([weights[m] for m in members], dtype=np.float64)
    if all(gives_samples.get(m) is True for m in members):
        rng = np.random.default_rng(seed)
        counts = path_counts(w, total)
        chosen = []
        for m, n in zip(members, counts.tolist(), strict=True):
            own = np.asarray(paths[m], dtype=np.float32)
            whole, rest = divmod(n, len(own))
            index = np.r_[np.tile(np.arange(len(own)), whole), rng.choice(len(own), rest, replace=False)]
            chosen.append(own[index.astype(np.int64)])
        mixed = np.concatenate(chosen)
        p10, p50, p90 = np.quantile(mixed.astype(np.float64), _LEVELS, axis=0)
        return Combined(METHOD_MIXTURE, p10, p50, p90, mixed, dict(zip(members, counts.tolist(), strict=True)))
    levels = (np.arange(total) + 0.5) / total
    horizon = len(bands[members[0]][0])
    rebuilt = np.zeros((total, horizon))
    averaged = np.zeros((3, horizon))
    for m, wm in zip(members, w.tolist(), strict=True):
        rebuilt += wm * np.quantile(np.asarray(paths[m], dtype=np.float64), levels, axis=0)
        averaged += wm * np.asarray(bands[m], dtype=np.float64)
    return Combined(METHOD_QUANTILE_AVERAGE, averaged[0], averaged[1], averaged[2], rebuilt.astype(np.float32), {})


# -- capabilities ----------------------------------------------------------------------------------


def sample_capabilities(
    settings: Settings, models: Sequence[str], local: bool, stored: Mapping[str, bool] | None = None
) -> dict[str, bool | None]:
    """Whether each model gives samples: from ``stored`` (what its rows say), else the model itself (in-process
    with ``local``, else ``GET /models`` of the inference service); None where that cannot be established."""
    found: dict[str, bool | None] = {m: (stored or {}).get(m) for m in models}
    missing = [m for m, known in found.items() if known is None]
    if not missing:
        return found
    if local:
        for model in missing:
            try:
                transport = LocalTransport.load(settings, model)
            except Exception as exc:  # e.g. weights absent: its forecasts are still combined, conservatively
                log.warning("ensemble: capabilities of %s unknown (%s); taken as giving no samples", model, exc)
                continue
            found[model] = transport.capabilities().gives_samples
            transport.close()
        return found
    cfg = settings.jobs
    try:
        with InferenceClient(
            settings.inference.url, token=settings.inference.token, timeout=cfg.http_timeout_s,
            retries=cfg.http_retries, backoff_s=cfg.http_backoff_s,
        ) as client:  # fmt: skip
            listed = {entry["name"]: entry for entry in client.models()["models"]}
    except Exception as exc:
        log.warning("ensemble: GET /models failed (%s); %s taken as giving no samples", exc, ", ".join(missing))
        return found
    for model in missing:
        flag = listed.get(model, {}).get("gives_samples")
        found[model] = flag if isinstance(flag, bool) else None
    return found


# -- the job ---------------------------------------------------------------------------------------


def run_ensemble(
    settings: Settings,
    engine: Engine,
    timeframe: str,
    as_of: datetime | None = None,
    models: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    local: bool | None = None,
    *,
    job_name: str | None = None,
    run_id: int | None = None,
    record: bool = True,
    gives_samples: Mapping[str, bool] | None = None,
) -> BatchResult:
    """Combine the member forecasts of the slot of ``as_of`` (default now) into one ``ensemble`` forecast per
    symbol (of ``symbols``, or every symbol with member forecasts), each written in its own transaction.

    ``models`` overrides the members (``member_models``); ``gives_samples`` (model -> flag) overrides how their
    capability is found (a replay knows it from the transports it holds); ``local`` (default
    ``jobs.local``) asks the models in-process instead of the inference service. ``job_name`` defaults to
    ``batch-ensemble-<timeframe>``; ``run_id`` continues a ``job_runs`` row a scheduler already claimed.
    """
    cfg = settings.ensemble
    slot = slot_time(as_of, timeframe)
    job_name = job_name or f"batch-{ENSEMBLE_MODEL}-{timeframe}"
    wanted = models if models is not None else member_models(settings)
    members = [m for m in dict.fromkeys(wanted) if m != ENSEMBLE_MODEL]
    if len(members) < cfg.min_members:
        raise InputError(
            "models", f"the ensemble needs at least {cfg.min_members} member models, found {members or 'none'} "
            "(set CANDLECAST_MODELS or ensemble.members)",
        )  # fmt: skip
    local = settings.jobs.local if local is None else local
    ok: list[str] = []
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    with recorded_run(engine, job_name, as_of=slot, run_id=run_id, record=record) as run:
        by_symbol: dict[str, list[Prediction]] = {}
        for p in slot_forecasts(engine, timeframe, slot, members, symbols):
            by_symbol.setdefault(p.symbol, []).append(p)
        for symbol in symbols or ():
            if symbol not in by_symbol:
                skipped[symbol] = f"no member forecast at the slot {slot.isoformat()}"
        todo: dict[str, tuple[list[Prediction], dict[str, str]]] = {}
        for symbol, found in sorted(by_symbol.items()):
            present, excluded = _usable(found, members)
            if len(present) < cfg.min_members:
                why = "; ".join(f"{m}: {reason}" for m, reason in excluded.items())
                skipped[symbol] = (
                    f"{len(present)} usable member forecast(s) at the slot {slot.isoformat()} "
                    f"(need {cfg.min_members})" + (f"; {why}" if why else "")
                )
                continue
            todo[symbol] = (present, excluded)
        since = slot - timedelta(days=cfg.lookback_days(timeframe))
        history = trailing_crps(
            engine, timeframe, slot, since, {s: [p.model_name for p in present] for s, (present, _) in todo.items()}
        )
        stored = _stored_flags([p for present, _ in todo.values() for p in present])
        used = sorted({p.model_name for present, _ in todo.values() for p in present})
        capabilities = {**stored, **(gives_samples or {})}
        flags = sample_capabilities(settings, used, local, capabilities) if used else {}
        total = cfg.sample_count or settings.jobs.sample_count
        forecasts: list[Prediction] = []
        for symbol, (present, excluded) in todo.items():
            try:
                own = {(s, m): h for (s, m), h in history.items() if s == symbol}
                forecasts.append(
                    _ensemble_forecast(symbol, present, excluded, own, flags, settings, timeframe, slot, since, total)
                )
            except Exception as exc:  # one symbol's failure never stops the others
                failed[symbol] = f"{type(exc).__name__}: {exc}"
        for p in _finish(settings, engine, timeframe, slot, forecasts):
            try:
                with engine.begin() as conn:
                    upsert_prediction(conn, p)
            except Exception as exc:
                failed[p.symbol] = f"write failed: {type(exc).__name__}: {exc}"
            else:
                ok.append(p.symbol)
        run.status = "ok" if not failed and ok else ("partial" if ok else "failed")
        run.errors = dict(failed)
        run.counts.update(
            ok=len(ok), failed=len(failed), skipped=len(skipped), skipped_symbols=skipped, members=members,
        )  # fmt: skip
        if not ok:
            run.error = "no ensemble forecast was written" + (f"; {len(skipped)} symbols skipped" if skipped else "")
    log.log(
        logging.INFO if record else logging.DEBUG,
        "%s slot %s: %d written, %d failed, %d skipped in %.1f s",
        job_name, slot.isoformat(), len(ok), len(failed), len(skipped), run.duration_s,
    )  # fmt: skip
    return BatchResult(
        job_name, timeframe, ENSEMBLE_MODEL, slot, tuple(sorted(ok)), failed, skipped, run.duration_s, run.id,
        run.status,
    )  # fmt: skip


def _usable(found: list[Prediction], members: Sequence[str]) -> tuple[list[Prediction], dict[str, str]]:
    """The member forecasts of one symbol that can be combined (in ``members`` order), and why others cannot."""
    by_model = {p.model_name: p for p in found}
    excluded: dict[str, str] = {}
    present: list[Prediction] = []
    for model in members:
        p = by_model.get(model)
        if p is None:
            excluded[model] = "no forecast at this slot"
        elif p.samples is None and p.samples_dropped_at is not None:
            excluded[model] = "samples dropped by retention"
        elif p.samples is None or not p.samples.size:
            excluded[model] = "no sample paths stored"
        elif present and p.target_ts != present[0].target_ts:
            excluded[model] = f"its target candles differ from {present[0].model_name}'s"
        else:
            present.append(p)
    return present, excluded


def _stored_flags(predictions: Sequence[Prediction]) -> dict[str, bool]:
    """What the stored rows say about their model's ``gives_samples`` (the batch job may record it)."""
    out: dict[str, bool] = {}
    for p in predictions:
        flag = (p.event_context or {}).get("gives_samples")
        if isinstance(flag, bool):
            out.setdefault(p.model_name, flag)
    return out


def _own_band(p: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A member's own p10/p50/p90 (calibration moves p10 and p90 only; rows from before it: the stored band)."""
    if p.p10_raw is None or p.p90_raw is None:
        return p.p10, p.p50, p.p90
    return p.p10_raw, p.p50, p.p90_raw


def _own_paths(p: Prediction) -> np.ndarray:
    """A member's own paths: the stored (served) ones with the calibration's stretch undone."""
    assert p.samples is not None
    lower, _, upper = _own_band(p)
    return unstretch_samples(p.samples, lower, upper, p.p10, p.p90)


def _seed(timeframe: str, slot: datetime, symbol: str) -> int:
    """The seed of one (timeframe, slot, symbol): re-running a slot draws the same paths."""
    key = "|".join([ENSEMBLE_MODEL, timeframe, slot.isoformat(), symbol]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def _ensemble_forecast(
    symbol: str,
    present: list[Prediction],
    excluded: dict[str, str],
    history: Mapping[tuple[str, str], TrailingCrps],
    flags: Mapping[str, bool | None],
    settings: Settings,
    timeframe: str,
    slot: datetime,
    since: datetime,
    total: int,
) -> Prediction:
    cfg = settings.ensemble
    models = [p.model_name for p in present]
    own = {m: h for (_, m), h in history.items()}
    weights = ensemble_weights(models, own, cfg.min_history, cfg.power)
    seed = _seed(timeframe, slot, symbol)
    paths = {p.model_name: _own_paths(p) for p in present if p.samples is not None}
    bands = {p.model_name: _own_band(p) for p in present}
    combined = combine(paths, bands, weights.weights, flags, total, seed)
    first = [own[m].first_as_of for m in models if m in own]
    last = [own[m].last_as_of for m in models if m in own]
    context: dict[str, Any] = {
        "ensemble": {
            "method": combined.method,
            "weights": {m: round(w, 6) for m, w in weights.weights.items()},
            "members": [
                {
                    "model_name": p.model_name,
                    "prediction_id": p.id,
                    "model_version": p.model_version,
                    "gives_samples": flags.get(p.model_name),
                    "paths": combined.paths.get(p.model_name),
                    "mean_crps": _finite(own[p.model_name].mean_crps) if p.model_name in own else None,
                }  # fmt: skip
                for p in present
            ],
            "history": {
                "rule": weights.rule,
                "reason": weights.reason,
                "forecasts": weights.forecasts,
                "steps": weights.steps,
                "min_history": cfg.min_history,
                "power": cfg.power,
                "since": since.isoformat(),
                "until": slot.isoformat(),
                "first_as_of": min(first).isoformat() if first else None,
                "last_as_of": max(last).isoformat() if last else None,
            },  # fmt: skip
            "excluded": excluded,
        },
        "gives_samples": combined.method == METHOD_MIXTURE,
        "seed": seed,
    }
    version = f"{ENSEMBLE_MODEL}-{VERSION}(" + ",".join(f"{p.model_name}:{p.model_version}" for p in present) + ")"
    return Prediction(
        symbol=symbol, timeframe=timeframe, model_name=ENSEMBLE_MODEL, model_version=version, as_of=slot,
        target_ts=list(present[0].target_ts), p10=combined.p10, p50=combined.p50, p90=combined.p90,
        last_close=float(present[0].last_close), samples=combined.samples, event_context=context,
    )  # fmt: skip


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finish(
    settings: Settings, engine: Engine, timeframe: str, slot: datetime, forecasts: list[Prediction]
) -> list[Prediction]:
    """The ensemble's forecasts of the slot, just before they are written: the one place they get what every
    model's forecasts get in the batch job before writing: calibration (``jobs.calibrate``; served band and
    paths calibrated from the ensemble's own past outcomes realised strictly before ``slot``, raw band kept)."""
    return calibrate_predictions(settings, engine, forecasts)
