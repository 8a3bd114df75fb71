"""The track record every forecast answer carries (showcase, ``/api/v1/predictions``, the ``get_forecast`` MCP tool,
the symbol page): how the past forecasts of the same (symbol, timeframe, model) did, and a plain verdict.

It is the all-steps row (step 0) of ``signal_performance`` in the window ``gateway.track_record_window``
(``trailing_30d`` by default: forecasts made in the 30 days before the newest scored one, so in a replay the window
follows the data, not the wall clock), read with the forecast in the same payload builder, hence cached, invalidated
and ETagged with it. Nothing in it depends on when it is read.

``coverage`` comes with ``coverage_low`` and ``coverage_high``, its 90% interval (``scores.coverage_interval``):
forecasts that overlap share outcomes, so a month or a year of them measures coverage far less precisely than
their number of steps suggests, and a coverage of 0.745 whose interval holds 0.8 is no evidence of a miscalibrated
band. Null with fewer than 2 scored forecasts (or steps), and in rows not refreshed since migration 0015.

``step_record`` is the same record per horizon step, as columns (one entry per step that has scores): the rows of
``signal_performance`` for steps 1..h in the same window, so a user sees whether the band holds at step 1 and at
step h alike (the symbol page's "By horizon step" chart, and ``by_step`` of ``/api/v1/performance`` for one series).

The verdict (``verdict``), from the number of scored forecasts ``n``, the CRPS skill against the random walk
``skill`` and the Diebold–Mariano p-value ``p``, with ``N = gateway.track_record_min_scored`` (30) and
``alpha = gateway.track_record_alpha`` (0.05):

- ``too few scores``: ``n < N``, or no skill or p-value could be computed (no sample paths, no random-walk
  reference);
- ``edge``: ``skill > 0`` and ``p < alpha``: the model's CRPS is lower than the random walk's, significantly;
- ``worse than random walk``: ``skill < 0`` and ``p < alpha``;
- ``no edge``: otherwise (the difference from the random walk is not significant).
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.engine import Connection, Engine

from candlecast.config import GatewaySettings
from candlecast.gateway.payloads.fields import floats, iso
from candlecast.store.performance import ALL_STEPS, PerformanceRow, performance

__all__ = [
    "EDGE",
    "NOMINAL_COVERAGE",
    "NO_EDGE",
    "TOO_FEW",
    "VERDICTS",
    "WORSE",
    "read_records",
    "read_track_record",
    "step_record",
    "track_record",
    "verdict",
]

NOMINAL_COVERAGE = 0.8  # p10..p90
EDGE = "edge"
NO_EDGE = "no edge"
WORSE = "worse than random walk"
TOO_FEW = "too few scores"
VERDICTS: tuple[str, ...] = (EDGE, NO_EDGE, WORSE, TOO_FEW)


def verdict(n_scored: int, skill: float | None, pvalue: float | None, min_scored: int, alpha: float) -> str:
    """The plain verdict of the module docstring."""
    known = [v for v in (skill, pvalue) if v is not None and math.isfinite(v)]
    if n_scored < min_scored or len(known) < 2:
        return TOO_FEW
    assert skill is not None and pvalue is not None
    if pvalue < alpha and skill > 0:
        return EDGE
    if pvalue < alpha and skill < 0:
        return WORSE
    return NO_EDGE


def _number(value: float | None) -> float | None:
    return floats([value])[0]


def track_record(row: PerformanceRow | None, gw: GatewaySettings) -> dict[str, Any]:
    """The track record from one all-steps performance row (None: nothing scored yet)."""
    n = row.n_predictions if row is not None else 0
    skill = _number(row.crps_skill) if row is not None else None
    pvalue = _number(row.dm_pvalue) if row is not None else None
    return {
        "window": gw.track_record_window,
        "scored_forecasts": n,
        "scored_steps": row.n_steps if row is not None else 0,
        "coverage": _number(row.coverage) if row is not None else None,
        "coverage_low": _number(row.coverage_low) if row is not None else None,
        "coverage_high": _number(row.coverage_high) if row is not None else None,
        "coverage_raw": _number(row.coverage_raw) if row is not None else None,
        "nominal_coverage": NOMINAL_COVERAGE,
        "crps_skill": skill,
        "dm_pvalue": pvalue,
        "verdict": verdict(n, skill, pvalue, gw.track_record_min_scored, gw.track_record_alpha),
        "min_scored": gw.track_record_min_scored,
        "alpha": gw.track_record_alpha,
        "first_as_of": iso(row.first_as_of) if row is not None else None,
        "last_as_of": iso(row.last_as_of) if row is not None else None,
        "scored_through": iso(row.refreshed_from) if row is not None else None,
    }


def read_track_record(
    bind: Engine | Connection, symbol: str, model: str, timeframe: str, gw: GatewaySettings
) -> dict[str, Any]:
    """The track record of (symbol, model, timeframe), read from ``signal_performance``."""
    rows = performance(
        bind, symbol=symbol, model_name=model, timeframe=timeframe, window=gw.track_record_window, step=ALL_STEPS
    )
    return track_record(rows[0] if rows else None, gw)


# The columns of a step record, each a list with one entry per scored horizon step (PerformanceRow's names, but
# ``n_steps`` -> ``scored_steps``).
STEP_FIELDS: tuple[str, ...] = (
    "step", "scored_steps", "coverage", "coverage_low", "coverage_high", "coverage_raw", "crps_skill", "dm_pvalue",
    "crps_bp", "hit_rate",
)  # fmt: skip


def step_record(rows: list[PerformanceRow]) -> dict[str, list[Any]]:
    """The per-step rows of one series (steps 1..h, any order) as columns in step order; NaN as None."""
    rows = sorted((r for r in rows if r.step != ALL_STEPS), key=lambda r: r.step)
    out: dict[str, list[Any]] = {"step": [r.step for r in rows], "scored_steps": [r.n_steps for r in rows]}
    for name in STEP_FIELDS[2:]:
        out[name] = floats([getattr(r, name) for r in rows])
    return out


def read_records(
    bind: Engine | Connection, symbol: str, model: str, timeframe: str, gw: GatewaySettings
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The track record and the step record of (symbol, model, timeframe), from one read of its
    ``signal_performance`` rows in the track record's window."""
    rows = performance(
        bind, symbol=symbol, model_name=model, timeframe=timeframe, window=gw.track_record_window, step=None
    )
    whole = next((r for r in rows if r.step == ALL_STEPS), None)
    return track_record(whole, gw), step_record(rows)
