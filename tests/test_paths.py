"""Path questions against closed forms for Gaussian random walks (reflection principle, gambler's ruin).

A walk observed at discrete steps touches a level less often than continuous Brownian motion; the closed
forms are compared with the barrier shifted by 0.5826 sigma per observation (Broadie, Glasserman and Kou's
continuity correction), which is accurate for many small steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from candlecast.errors import InputError
from candlecast.paths import close_beyond, first_touch, max_drawdown, max_runup, require_precision, touch

BETA = 0.5826  # -zeta(1/2) / sqrt(2 pi)


def walks(paths: int, steps: int, sigma: float = 1.0, start: float = 100.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start + sigma * np.cumsum(rng.standard_normal((paths, steps)), axis=1)


@pytest.mark.parametrize("above", [True, False])
def test_touch_probability_matches_the_reflection_principle(above: bool) -> None:
    closes = walks(20_000, 400)
    distance = 15.0  # 0.75 of the horizon's standard deviation (20)
    level = 100.0 + distance if above else 100.0 - distance
    answer = touch(closes, level, steps=400, above=above)
    expected = 2 * (1 - norm.cdf((distance + BETA) / math.sqrt(400)))
    assert answer.paths == 20_000 and answer.basis == "close"
    assert abs(answer.probability - expected) < 4 * answer.standard_error + 0.003


def test_touch_by_an_earlier_step_only_looks_at_those_steps() -> None:
    closes = walks(20_000, 400, seed=1)
    early, late = touch(closes, 110.0, 100, True), touch(closes, 110.0, 400, True)
    expected = 2 * (1 - norm.cdf((10.0 + BETA) / math.sqrt(100)))
    assert early.probability < late.probability
    assert abs(early.probability - expected) < 4 * early.standard_error + 0.003


def test_close_beyond_a_level_at_a_step_is_the_normal_tail() -> None:
    closes = walks(20_000, 50, seed=2)
    answer = close_beyond(closes, 105.0, step=25, above=True)
    assert abs(answer.probability - (1 - norm.cdf(5.0 / 5.0))) < 4 * answer.standard_error
    below = close_beyond(closes, 105.0, step=25, above=False)
    assert below.probability == pytest.approx(1 - answer.probability, abs=1e-12)  # no ties in continuous draws


def test_stop_before_target_matches_gamblers_ruin_when_the_horizon_is_long() -> None:
    closes = walks(5_000, 2_000, seed=3)
    target, stop = 110.0, 95.0  # from 100: the target is 10 above, the stop 5 below
    answers = first_touch(closes, target, stop, steps=2_000, origin=100.0)
    upper, lower = target + BETA, stop - BETA
    expected_target_first = (100.0 - lower) / (upper - lower)
    assert answers["neither"].probability < 0.002
    assert abs(answers["a_first"].probability - expected_target_first) < 4 * answers["a_first"].standard_error + 0.01
    total = sum(answers[k].probability for k in ("a_first", "b_first", "same_step", "neither"))
    assert total == pytest.approx(1.0)


def test_highs_and_lows_count_a_touch_inside_a_candle() -> None:
    closes = np.array([[100.0, 101.0, 100.5], [100.0, 99.0, 99.5]])
    highs = closes + np.array([[0.5, 2.5, 0.1], [0.2, 0.2, 0.2]])
    lows = closes - 0.3
    by_close = touch(closes, 103.0, 3, above=True)
    by_high = touch(closes, 103.0, 3, above=True, highs=highs, lows=lows)
    assert by_close.probability == 0.0 and by_close.basis == "close"
    assert by_high.probability == 0.5 and by_high.basis == "high/low"
    # a wide candle touching both a target (103) and a stop (98.5) in the same step is not given an order
    wide_lows = lows.copy()
    wide_lows[0, 1] = 98.0
    both = first_touch(closes, 103.0, 98.5, 3, origin=100.0, highs=highs, lows=wide_lows)
    assert both["same_step"].probability == 0.5 and both["neither"].probability == 0.5
    assert both["a_first"].probability == both["b_first"].probability == 0.0


def test_drawdown_and_runup_quantiles_of_known_paths() -> None:
    rising = np.tile(np.linspace(101, 110, 10), (40, 1))
    assert max_drawdown(rising, 10, start=100.0).values == (0.0, 0.0, 0.0)
    assert max_runup(rising, 10, start=100.0).values[1] == pytest.approx(0.10)
    dip = np.tile(np.array([100.0, 90.0, 95.0, 120.0]), (40, 1))
    answer = max_drawdown(dip, 4, start=100.0)
    assert answer.values[1] == pytest.approx(0.10) and answer.paths == 40
    assert all(lo <= v <= hi for lo, v, hi in zip(answer.lower, answer.values, answer.upper, strict=True))


def test_drawdowns_deepen_as_the_horizon_grows() -> None:
    closes = walks(4_000, 100, start=1000.0, seed=4)
    shallow, deep = max_drawdown(closes, 25), max_drawdown(closes, 100)
    assert all(a <= b for a, b in zip(shallow.values, deep.values, strict=True))


def test_too_few_paths_for_the_asked_precision_are_refused_with_how_many_would_do() -> None:
    closes = walks(32, 10, seed=5)
    answer = touch(closes, 100.0, 10, above=True)
    with pytest.raises(InputError, match=r"32 paths give a standard error of 0\.\d+.*about \d+ paths"):
        require_precision(answer, 0.02)
    assert require_precision(answer, 0.2) is answer


def test_bad_shapes_and_steps_name_the_field() -> None:
    with pytest.raises(InputError, match="steps"):
        touch(walks(10, 5), 101.0, 6, above=True)
    with pytest.raises(InputError, match="highs"):
        touch(walks(10, 5), 101.0, 5, above=True, highs=np.zeros((10, 4)), lows=np.zeros((10, 4)))
