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
from candlecast.paths import (
    TOUCH_GRID,
    close_beyond,
    first_touch,
    max_drawdown,
    max_runup,
    random_walk_touch,
    require_precision,
    touch,
    touch_levels,
    touch_probabilities,
    touch_scores,
)
from candlecast.scores import brier, brier_decomposition, fair_brier, reliability_table

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


# -- grading touch questions -----------------------------------------------------------------------------


def test_brier_scores_and_the_reliability_table_against_hand_computed_values() -> None:
    p = np.array([0.0, 0.25, 0.25, 0.5, 0.95, 1.0])
    o = np.array([0, 1, 0, 1, 1, 1])
    np.testing.assert_allclose(brier(p, o), [0.0, 0.5625, 0.0625, 0.25, 0.0025, 0.0])
    # fair: minus p (1 - p) / (M - 1) with M = 4 paths
    np.testing.assert_allclose(fair_brier(p, o, np.full(6, 4)), brier(p, o) - p * (1 - p) / 3)
    table = reliability_table(p, o, bins=4)  # [0, .25), [.25, .5), [.5, .75), [.75, 1]
    np.testing.assert_array_equal(table["count"], [1, 2, 1, 2])
    np.testing.assert_allclose(table["mean_predicted"], [0.0, 0.25, 0.5, 0.975])
    np.testing.assert_allclose(table["observed"], [0.0, 0.5, 1.0, 1.0])
    parts = brier_decomposition(p, o, bins=4)
    base = 4 / 6
    assert parts["base_rate"] == pytest.approx(base)
    assert parts["uncertainty"] == pytest.approx(base * (1 - base))
    assert parts["reliability"] == pytest.approx((1 * 0 + 2 * 0.25**2 + 1 * 0.5**2 + 2 * 0.025**2) / 6)
    assert parts["resolution"] == pytest.approx((base**2 + 2 * (0.5 - base) ** 2 + 3 * (1 - base) ** 2) / 6)
    empty = reliability_table(np.array([0.05]), np.array([1]), bins=2)
    assert empty["count"].tolist() == [1, 0] and np.isnan(empty["observed"][1])


def test_the_fair_brier_score_is_unbiased_for_the_probability_the_paths_were_drawn_from() -> None:
    rng = np.random.default_rng(3)
    q, m = 0.3, 8
    counted = rng.binomial(m, q, 200_000) / m
    for outcome in (0, 1):
        o = np.full(len(counted), outcome)
        fair, plain = fair_brier(counted, o, np.full(len(o), m)).mean(), brier(counted, o).mean()
        assert fair == pytest.approx((q - outcome) ** 2, abs=0.003)
        assert plain - (q - outcome) ** 2 == pytest.approx(q * (1 - q) / m, abs=0.003)  # the plain one is not


def test_touch_levels_are_k_random_walk_deviations_from_the_last_close() -> None:
    levels = touch_levels(np.array([100.0, 50.0]), np.array([0.01, 0.02]), np.array([4, 9]))
    assert levels.shape == (2, len(TOUCH_GRID))
    np.testing.assert_allclose(levels[0], 100 * np.exp(np.array(TOUCH_GRID) * 0.01 * 2))
    np.testing.assert_allclose(levels[1], 50 * np.exp(np.array(TOUCH_GRID) * 0.02 * 3))


def test_grid_touches_are_counted_on_highs_and_lows_when_given() -> None:
    closes = np.array([[[100.0, 101, 99], [100, 104, 103]]])  # one forecast, 2 paths, 3 steps
    highs, lows = closes + 2, closes - 2
    levels, above = np.array([[103.5, 97.5]]), np.array([True, False])
    on_closes, basis = touch_probabilities(closes, levels, above)
    assert basis == "close" and on_closes.tolist() == [[0.5, 0.0]]
    on_extremes, basis = touch_probabilities(closes, levels, above, highs, lows)
    assert basis == "high/low" and on_extremes.tolist() == [[0.5, 0.5]]
    realised, _ = touch_probabilities(np.array([[100.0, 97.0, 104.0]]), np.array([103.5, 97.5]), above)
    assert realised.tolist() == [1.0, 1.0]  # a realised path is one path


def test_the_random_walk_touch_probability_is_the_reflection_principle() -> None:
    k = np.array([1, 2, 3, -1])
    np.testing.assert_allclose(random_walk_touch(k, np.full(4, 10), "high/low"), 2 * norm.sf([1, 2, 3, 1]))
    # on closes: a simulated discrete walk (log prices), 40 steps, against the corrected closed form
    rng = np.random.default_rng(5)
    log_paths = np.cumsum(rng.standard_normal((100_000, 40)), axis=1)
    for kk in (1, 2):
        simulated = (log_paths.max(axis=1) >= kk * math.sqrt(40)).mean()
        assert random_walk_touch(np.array([kk]), np.array([40]), "close")[0] == pytest.approx(simulated, abs=0.006)


def _grade(sample_sigma_factor: float, seed: int, forecasts: int = 3000, m: int = 256, h: int = 10):
    """Forecasts of Gaussian random walks of log prices (each its own sigma) graded on the touch grid: the
    realised path comes from the same process; the sample paths' sigma is ``sample_sigma_factor`` times it.

    The grid's sigma is a noisy estimate of the true one (as a trailing volatility is), so the probabilities
    asked about vary continuously. 256 paths: a probability counted from few paths scatters about the true one
    by sqrt(q (1 - q) / M), and binning on it pulls each bin's observed frequency towards the base rate (with
    32 paths by up to 0.09 here), which would read as overconfidence."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.005, 0.03, forecasts)
    c0 = rng.uniform(50, 150, forecasts)
    estimate = sigma * np.exp(rng.normal(0, 0.3, forecasts))
    realised = c0[:, None] * np.exp(sigma[:, None] * np.cumsum(rng.standard_normal((forecasts, h)), axis=1))
    steps = rng.standard_normal((forecasts, m, h)) * (sample_sigma_factor * sigma)[:, None, None]
    paths = c0[:, None, None] * np.exp(np.cumsum(steps, axis=2))
    levels = touch_levels(c0, estimate, np.full(forecasts, h))
    above = np.array(TOUCH_GRID) > 0
    p, basis = touch_probabilities(paths, levels, above)
    happened, _ = touch_probabilities(realised[:, None, :], levels, above)
    p_rw = np.broadcast_to(random_walk_touch(np.array(TOUCH_GRID), np.full(len(TOUCH_GRID), h), basis), p.shape)
    forecast = np.repeat(np.arange(forecasts), len(TOUCH_GRID))
    # one origin per forecast, in time order: independent forecasts
    return touch_scores(forecast, forecast, p.ravel(), p_rw.ravel(), happened.ravel(), np.full(p.size, m), h)


def test_paths_drawn_from_the_realised_process_give_reliable_touch_probabilities() -> None:
    score = _grade(1.0, seed=11)
    table = score.reliability
    full = table["count"] >= 50
    gap = np.abs(table["observed"] - table["mean_predicted"])[full]
    tolerance = 4 * np.sqrt(table["observed"] * (1 - table["observed"]) / table["count"])[full] + 0.01
    assert full.sum() >= 5 and (gap <= tolerance).all(), (table, tolerance)
    assert score.decomposition["reliability"] < 0.001
    # it knows the true sigma, the random walk only the noisy estimate the grid was drawn with
    assert score.skill > 0.02 and score.dm_pvalue < 0.001 and score.dm_stat < 0


def test_a_forecaster_with_too_narrow_paths_is_detected() -> None:
    score = _grade(0.5, seed=12)
    table = score.reliability
    full = table["count"] >= 50
    # too narrow: levels are touched far more often than its paths say
    assert (table["observed"][full] > table["mean_predicted"][full]).all()
    assert score.decomposition["reliability"] > 0.005
    assert score.skill < -0.05 and score.dm_pvalue < 0.001 and score.dm_stat > 0
