"""The calibration maths (``candlecast.calibration``): conformal quantiles, the ACI level, the EWMA volatility,
the stretch of sample paths, and walk-forward runs on synthetic markets whose raw bands are wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from candlecast.calibration import (
    CalibrationParams,
    PastOutcomes,
    calibrate_band,
    conformal_quantile,
    ewma_volatility,
    memory_weights,
    sample_centre,
    stretch_map,
    stretch_samples,
    tracking_integrator,
    unstretch_samples,
)

Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile


def test_the_conformal_quantile_is_the_rank_ceil_n_plus_1_times_level() -> None:
    scores = np.arange(1.0, 20.0)[::-1]  # 19 scores, 1..19, unsorted
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18
    assert conformal_quantile(scores[:9], 0.9) == 19.0  # ceil(10 * 0.9) = 9 = n: the largest of 11..19
    assert conformal_quantile(scores, 1.2) == 19.0  # beyond n: the largest
    assert conformal_quantile(scores, -0.3) == 1.0  # a miss level above 1: the smallest
    with pytest.raises(ValueError):
        conformal_quantile(np.zeros(0), 0.9)


def test_the_integrator_adds_gamma_times_each_error_minus_the_target() -> None:
    assert tracking_integrator(0.1, 0.02, np.zeros(0, dtype=bool)) == pytest.approx(0.0)
    errors = np.array([True, False, False, True, True])
    # q_{t+1} = q_t + gamma (err_t - 0.1), unrolled from 0
    expected = 0.0
    for e in errors:
        expected += 0.02 * (float(e) - 0.1)
    assert tracking_integrator(0.1, 0.02, errors) == pytest.approx(expected)


def test_ewma_volatility_weighs_returns_by_half_life_and_reads_nothing_after_the_cutoff() -> None:
    rng = np.random.default_rng(1)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    times = np.arange(300) * 10
    cutoffs = np.array([155, 2000, 2990])
    got = ewma_volatility(times, closes, cutoffs, halflife=8.0)
    for cutoff, value in zip(cutoffs, got, strict=True):
        last = int(np.searchsorted(times, cutoff, side="right")) - 1
        returns = np.diff(np.log(closes[: last + 1]))[-40:]  # ceil(5 * 8) returns
        weights = 0.5 ** (np.arange(len(returns))[::-1] / 8.0)
        assert value == pytest.approx(math.sqrt((weights * returns**2).sum() / weights.sum()))
    shocked = closes.copy()
    shocked[201:] *= 3.0  # a jump after the second cutoff's last candle (index 200)
    assert ewma_volatility(times, shocked, cutoffs[:2], 8.0) == pytest.approx(got[:2])
    assert np.isnan(ewma_volatility(times, closes, np.array([-5, 30]), 8.0)).all()  # none / 3 returns < 8


def test_stretched_samples_read_back_the_band_and_keep_the_median() -> None:
    rng = np.random.default_rng(2)
    for m in (3, 16, 32, 257):
        samples = (100 + rng.standard_t(3, (m, 6))).astype(np.float32)
        median = np.quantile(samples.astype(np.float64), 0.5, axis=0)
        a, b = sample_centre(samples)
        lower = a - rng.uniform(0.1, 5, 6)
        upper = b + rng.uniform(0.1, 5, 6)
        chosen = np.array([True, True, True, True, True, False])
        out = stretch_samples(samples, lower, upper, chosen)
        stored = out.astype(np.float32).astype(np.float64)  # the store keeps float32 samples
        p10, p50, p90 = np.quantile(stored, [0.1, 0.5, 0.9], axis=0)  # linear, as the forecasters use
        np.testing.assert_allclose(p10[:5], lower[:5], rtol=1e-6)
        np.testing.assert_allclose(p90[:5], upper[:5], rtol=1e-6)
        np.testing.assert_allclose(p50, median, rtol=1e-6)
        np.testing.assert_array_equal(out[:, 5], samples[:, 5])  # a step left raw is untouched
        np.testing.assert_array_equal(np.argsort(out, axis=0, kind="stable")[:, :5],
                                      np.argsort(samples, axis=0, kind="stable")[:, :5])  # fmt: skip


def test_the_stretch_is_undone_from_the_stored_bands_alone() -> None:
    rng = np.random.default_rng(5)
    for m in (3, 16, 32, 257):
        raw = (100 + rng.standard_t(3, (m, 6))).astype(np.float32).astype(np.float64)
        raw_lower, raw_upper = np.quantile(raw, [0.1, 0.9], axis=0)
        a, b = sample_centre(raw)
        lower = a - rng.uniform(0.2, 3, 6) * (a - raw_lower)  # wider on some steps, narrower on others
        upper = b + rng.uniform(0.2, 3, 6) * (raw_upper - b)
        chosen = np.array([True, True, True, True, True, False])
        lower[~chosen], upper[~chosen] = raw_lower[~chosen], raw_upper[~chosen]  # as stored: served = raw there
        served = stretch_samples(raw, lower, upper, chosen).astype(np.float32)  # the store keeps float32 samples
        back = unstretch_samples(served, raw_lower, raw_upper, lower, upper)
        np.testing.assert_allclose(back, raw, rtol=1e-5)
        assert not np.allclose(served[:, 0], raw[:, 0], rtol=1e-3)  # the round trip did undo a real stretch
    # a side collapsed onto the centre cannot be undone: it is left as served, never divided by zero
    raw = 100 + rng.standard_normal((32, 2))
    a, b = sample_centre(raw)
    raw_lower, raw_upper = np.quantile(raw, [0.1, 0.9], axis=0)
    served = stretch_samples(raw, a, raw_upper)
    back = unstretch_samples(served, raw_lower, raw_upper, a, raw_upper)
    assert np.isfinite(back).all()
    np.testing.assert_array_equal(back, served)


def test_highs_and_lows_move_with_their_closes_by_the_same_per_step_per_side_map() -> None:
    rng = np.random.default_rng(4)
    m, h = 32, 6
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (m, h)), axis=1))
    highs = closes * (1 + rng.uniform(0, 0.01, (m, h)))
    lows = closes * (1 - rng.uniform(0, 0.01, (m, h)))
    a, b = sample_centre(closes)
    chosen = np.array([True, True, False, True, True, True])
    for widen in (3.0, 0.3):  # a band much wider, then narrower than the samples'
        lower = a - widen * (a - np.quantile(closes, 0.1, axis=0))
        upper = b + widen * (np.quantile(closes, 0.9, axis=0) - b)
        stretch = stretch_map(closes, lower, upper, chosen)
        assert stretch is not None
        np.testing.assert_array_equal(stretch.apply(closes), stretch_samples(closes, lower, upper, chosen))
        new_close, new_high, new_low = stretch.apply(closes), stretch.apply(highs), stretch.apply(lows)
        assert (new_high >= new_close).all() and (new_low <= new_close).all()
        # by hand: a value below the step's lower middle a moves to a + f_low (x - a), one above the upper
        # middle b to b + f_high (x - b), with the factors of the closes
        f_high = (upper - b) / (np.quantile(closes, 0.9, axis=0) - b)
        f_low = (a - lower) / (a - np.quantile(closes, 0.1, axis=0))

        for before, after in ((highs, new_high), (lows, new_low)):
            by_hand = np.where(
                before < a, a + f_low * (before - a), np.where(before > b, b + f_high * (before - b), before)
            )
            np.testing.assert_allclose(after[:, chosen], by_hand[:, chosen], rtol=1e-12)
        np.testing.assert_array_equal(new_high[:, 2], highs[:, 2])  # a step left raw is untouched
    assert stretch_map(closes[:2], lower, upper) is None  # too few paths: nothing moves


# -- walk-forward on synthetic markets -------------------------------------------------------------------------


def walk_forward(
    vol: np.ndarray, width: float, steps: int, params: CalibrationParams, model_window: int, seed: int,
    drift: float = 0.0, below: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A market with per-candle volatility ``vol`` (Student-t 4 returns, plus ``drift`` per candle) and a model
    whose band, centred on the last close, is ``width`` times the right one for its own volatility estimate (the
    std of its last ``model_window`` returns).

    A forecast is made at every candle from 100 on, for ``steps`` candles ahead, and calibrated from the
    outcomes realised by then, exactly as the batch job does. Returns, per forecast and step: whether the
    outcome fell in the calibrated band and in the raw band, and the two bands' widths; ``below`` (if given)
    receives per forecast whether each outcome fell below the calibrated band.
    """
    rng = np.random.default_rng(seed)
    n = len(vol)
    close = 100 * np.exp(np.cumsum(drift + vol * rng.standard_t(4, n) / math.sqrt(2)))
    times = np.arange(n)
    returns = np.diff(np.log(close))
    model_sigma = np.r_[np.full(model_window, np.nan), sliding_window_view(returns, model_window).std(axis=1, ddof=1)]
    origins = np.arange(100, n - steps)
    scale = close[origins] * ewma_volatility(times, close, origins, halflife=20)
    h = np.arange(1, steps + 1)
    past: dict[str, list[np.ndarray]] = {name: [] for name in PastOutcomes.__dataclass_fields__}
    inside, inside_raw, widths, raw_widths = [], [], [], []
    for i, o in enumerate(origins):
        c0 = close[o]
        half = Z90 * width * model_sigma[o] * np.sqrt(h)
        lo, hi = c0 * np.exp(-half), c0 * np.exp(half)
        known = {name: np.concatenate(v) if v else np.zeros(0) for name, v in past.items()}
        keep = known["realised_at"] <= o  # candles closed by the origin
        history = PastOutcomes(**{name: v[keep] for name, v in known.items()})
        band = calibrate_band(lo, hi, float(scale[i]), history, params, np.full(steps, c0), np.full(steps, c0))
        y = close[o + h]
        for name, value in (
            ("step", h), ("realised_at", o + h), ("observed", y), ("raw_lower", lo), ("raw_upper", hi),
            ("served_lower", band.lower), ("served_upper", band.upper), ("scale", np.full(steps, scale[i])),
            ("governed", band.calibrated),
        ):  # fmt: skip
            past[name].append(np.asarray(value))
        inside.append((band.lower <= y) & (y <= band.upper))
        if below is not None:
            below.append(y < band.lower)
        inside_raw.append((lo <= y) & (y <= hi))
        widths.append(band.upper - band.lower)
        raw_widths.append(hi - lo)
    return np.array(inside), np.array(inside_raw), np.array(widths), np.array(raw_widths)


PARAMS = CalibrationParams(alpha=0.2, gamma=0.1, window=500, min_outcomes=20, min_outcomes_per_h=5)


@pytest.mark.parametrize(("width", "raw_coverage"), [(0.35, (0.0, 0.45)), (2.5, (0.97, 1.0))], ids=["narrow", "wide"])
def test_coverage_converges_to_80_percent_whatever_the_raw_band(width: float, raw_coverage: tuple) -> None:
    vol = np.full(900, 0.01)
    inside, inside_raw, widths, raw_widths = walk_forward(vol, width, 3, PARAMS, model_window=60, seed=3)
    settled = slice(100, None)  # after the first 100 forecasts
    assert raw_coverage[0] <= inside_raw[settled].mean() <= raw_coverage[1]
    assert inside[settled].mean() == pytest.approx(0.8, abs=0.03)
    for step in range(3):
        assert inside[settled, step].mean() == pytest.approx(0.8, abs=0.05)
    # the signed score lets a band that is too wide shrink, and one too narrow widen
    ratio = widths[settled].mean() / raw_widths[settled].mean()
    assert ratio < 0.6 if width > 1 else ratio > 2


def test_calibration_tracks_a_volatility_regime_change() -> None:
    # volatility triples at candle 500; the model's 250-candle volatility lags behind, so its band is too narrow
    vol = np.r_[np.full(500, 0.01), np.full(500, 0.03)]
    changed = slice(400, 550)  # forecasts made in the 150 candles after the change (origins start at 100)
    adaptive, raw, _, _ = walk_forward(vol, 1.0, 3, PARAMS, model_window=250, seed=4)
    fixed, _, _, _ = walk_forward(vol, 1.0, 3, CalibrationParams(gamma=0.0, window=500), model_window=250, seed=4)
    assert raw[changed].mean() < 0.65
    assert fixed[changed].mean() < 0.72  # plain conformal quantiles of the old regime lag too
    assert 0.74 <= adaptive[changed].mean() <= 0.86
    assert adaptive[changed].mean() > fixed[changed].mean() + 0.1


def test_steps_with_too_few_outcomes_keep_the_raw_band() -> None:
    rng = np.random.default_rng(5)
    k = 45
    y = 100 + rng.normal(0, 1, k)
    steps = np.r_[np.ones(20, dtype=np.int64), np.full(19, 2), np.full(6, 4)]
    history = PastOutcomes(
        step=steps, realised_at=np.arange(k), observed=y, raw_lower=np.full(k, 99.0), raw_upper=np.full(k, 101.0),
        served_lower=np.full(k, 99.0), served_upper=np.full(k, 101.0), scale=np.full(k, 0.5),
        governed=np.zeros(k, bool),
    )  # fmt: skip
    raw_lower, raw_upper = np.array([99.0, 98.0, 97.0, 96.0]), np.array([101.0, 102.0, 103.0, 104.0])
    band = calibrate_band(raw_lower, raw_upper, 2.0, history, PARAMS)
    # step 1: 20 outcomes (enough); 2: 19 < 20; 3: none; 4: 6 < max(20, 5 * 4)
    assert band.calibrated.tolist() == [True, False, False, False]
    assert band.n_outcomes.tolist() == [20, 19, 0, 6]
    assert (band.lower[1:].tolist(), band.upper[1:].tolist()) == ([98.0, 97.0, 96.0], [102.0, 103.0, 104.0])
    assert np.isnan(band.q_lower[1:]).all() and np.isnan(band.q_upper[1:]).all() and np.isnan(band.alpha[1:]).all()
    # nothing governed yet, so alpha = 0.2 and q is the ceil(21 * 0.8) = 17th smallest of the 20 two-sided scores
    scores = np.maximum(99.0 - y[:20], y[:20] - 101.0) / 0.5
    assert band.alpha[0] == pytest.approx(0.2)
    assert band.q_lower[0] == band.q_upper[0] == pytest.approx(np.sort(scores)[16])
    # per side: each side's shift is the ceil(21 * 0.9) = 19th smallest of its own 20 scores
    sided = calibrate_band(raw_lower, raw_upper, 2.0, history, CalibrationParams(sides=True))
    assert sided.q_lower[0] == pytest.approx(np.sort((99.0 - y[:20]) / 0.5)[18])
    assert sided.q_upper[0] == pytest.approx(np.sort((y[:20] - 101.0) / 0.5)[18])
    assert (band.lower[0], band.upper[0]) == pytest.approx(
        (99.0 - 2.0 * band.q_lower[0], 101.0 + 2.0 * band.q_upper[0])
    )
    nothing = calibrate_band(raw_lower, raw_upper, math.nan, history, PARAMS)
    assert not nothing.calibrated.any()  # no volatility at the origin: raw


def two_steps_of_misses_above() -> tuple[PastOutcomes, np.ndarray]:
    """Band [99, 101] at two steps. Step 1: 30 governed outcomes, all misses above. Step 2: 40 outcomes, the last
    20 governed, 10 of those misses above. Returns the history and step 2's outcomes."""
    y1 = np.full(30, 150.0)
    y2 = np.r_[np.full(30, 100.0), np.full(10, 150.0)]
    k1, k2 = len(y1), len(y2)
    history = PastOutcomes(
        step=np.r_[np.ones(k1, np.int64), np.full(k2, 2)], realised_at=np.r_[np.arange(k1), np.arange(k2)],
        observed=np.r_[y1, y2], raw_lower=np.full(k1 + k2, 99.0), raw_upper=np.full(k1 + k2, 101.0),
        served_lower=np.full(k1 + k2, 99.0), served_upper=np.full(k1 + k2, 101.0), scale=np.ones(k1 + k2),
        governed=np.r_[np.ones(k1, bool), np.zeros(20, bool), np.ones(20, bool)],
    )  # fmt: skip
    return history, y2


def test_misses_of_governed_bands_move_the_shift_by_gamma_over_k_pooled_over_the_steps_up_to_h() -> None:
    history, y2 = two_steps_of_misses_above()
    band = calibrate_band(np.array([99.0, 99.0, 99.0]), np.array([101.0, 101.0, 101.0]), 1.0, history, PARAMS)
    own = np.array([0.1 * (30 - 0.2 * 30), 0.1 / 2 * (10 - 0.2 * 20), 0.0])  # step 3 has no outcomes
    np.testing.assert_allclose(band.drift_lower, np.cumsum(own) / [1, 2, 3])
    np.testing.assert_array_equal(band.drift_upper, band.drift_lower)  # two-sided: one integrator
    assert band.drift_lower[1] < own[0]  # step 2 learns from step 1's misses before its own outcomes all came back
    # the shift is the conformal 0.8 quantile of the step's scores plus its spread times the pooled integrator
    scores2 = np.maximum(99.0 - y2, y2 - 101.0)
    spread = np.sort(scores2)[36] - np.sort(scores2)[4]  # the 0.9 and 0.1 order statistics of 40
    assert band.q_lower[1] == pytest.approx(np.sort(scores2)[32] + spread * band.drift_lower[1])  # ceil(41 * 0.8)
    np.testing.assert_array_equal(band.q_upper, band.q_lower)  # both sides move by the same amount
    assert band.calibrated.tolist() == [True, True, False]
    # no misses at all: the integrator narrows the band
    calm = PastOutcomes(**{**history.__dict__, "observed": np.full(len(history), 100.0)})
    narrowed = calibrate_band(np.array([99.0, 99.0]), np.array([101.0, 101.0]), 1.0, calm, PARAMS)
    assert (narrowed.drift_lower < 0).all()


def test_per_side_misses_move_their_own_side_by_gamma_over_k_pooled_over_the_steps_up_to_h() -> None:
    history, y2 = two_steps_of_misses_above()
    forever = CalibrationParams(alpha=0.2, gamma=0.1, window=500, sides=True)
    band = calibrate_band(np.array([99.0, 99.0, 99.0]), np.array([101.0, 101.0, 101.0]), 1.0, history, forever)
    # each side aims at alpha / 2 = 0.1; step 3 has no outcomes
    up = np.array([0.1 * (30 - 0.1 * 30), 0.1 / 2 * (10 - 0.1 * 20), 0.0])
    down = np.array([0.1 * (0 - 0.1 * 30), 0.1 / 2 * (0 - 0.1 * 20), 0.0])
    np.testing.assert_allclose(band.drift_upper, np.cumsum(up) / [1, 2, 3])
    np.testing.assert_allclose(band.drift_lower, np.cumsum(down) / [1, 2, 3])
    assert band.drift_upper[1] < up[0]  # step 2 learns from step 1's misses before its own outcomes all came back
    # each shift is the conformal 0.9 quantile of its side's scores plus their spread times its integrator
    for scores, q, drift in (
        (y2 - 101.0, band.q_upper[1], band.drift_upper[1]),
        (99.0 - y2, band.q_lower[1], band.drift_lower[1]),
    ):
        spread = np.sort(scores)[36] - np.sort(scores)[4]  # the 0.9 and 0.1 order statistics of 40
        assert q == pytest.approx(np.sort(scores)[36] + spread * drift)  # ceil(41 * 0.9) = 37th
    assert band.calibrated.tolist() == [True, True, False]
    # the misses were all above: p90 moves out, p10 moves in (its side never missed)
    assert band.q_upper[1] > 0 > band.q_lower[1]
    # no misses at all: the integrators narrow the band
    calm = PastOutcomes(**{**history.__dict__, "observed": np.full(len(history), 100.0)})
    narrowed = calibrate_band(np.array([99.0, 99.0]), np.array([101.0, 101.0]), 1.0, calm, forever)
    assert (narrowed.drift_lower < 0).all() and (narrowed.drift_upper < 0).all()


def test_the_integrator_forgets_old_misses_with_its_half_life_counted_in_candles() -> None:
    days = np.array([0, 1, 2, 3, 4, 7, 8], dtype=np.int64) * 86_400  # a weekend between 4 and 7 is no age
    np.testing.assert_allclose(memory_weights(days, 2.0), 0.5 ** (np.array([6, 5, 4, 3, 2, 1, 0]) / 2.0))
    assert (memory_weights(days, None) == 1).all()
    # 40 misses long ago, then 120 calm outcomes: remembered for ever they still hold the band wide
    y = np.r_[np.full(40, 150.0), np.full(120, 100.0)]
    k = len(y)
    history = PastOutcomes(
        step=np.ones(k, np.int64), realised_at=np.arange(k), observed=y, raw_lower=np.full(k, 99.0),
        raw_upper=np.full(k, 101.0), served_lower=np.full(k, 99.0), served_upper=np.full(k, 101.0),
        scale=np.ones(k), governed=np.ones(k, bool),
    )  # fmt: skip
    forever = calibrate_band(np.array([99.0]), np.array([101.0]), 1.0, history, CalibrationParams(memory=None))
    fading = calibrate_band(np.array([99.0]), np.array([101.0]), 1.0, history, CalibrationParams(memory=20.0))
    w = memory_weights(np.arange(k), 20.0)
    assert fading.drift_lower[0] == pytest.approx(0.1 * float((w * ((y > 101.0) - 0.2)).sum()))
    assert forever.drift_lower[0] == pytest.approx(0.1 * (40 - 0.2 * k))
    assert fading.drift_lower[0] < 0 < forever.drift_lower[0]  # the old shock no longer widens the band


def test_per_side_each_side_is_calibrated_on_its_own_in_a_drifting_market() -> None:
    # prices rise steadily; the model's band is centred on the last close, so p90 misses far more than p10
    vol = np.full(1200, 0.01)
    below: list[np.ndarray] = []
    sided = CalibrationParams(alpha=0.2, gamma=0.1, window=500, min_outcomes=20, min_outcomes_per_h=5, sides=True)
    inside, inside_raw, _, _ = walk_forward(vol, 1.0, 3, sided, model_window=60, seed=6, drift=0.006, below=below)
    settled = slice(200, None)
    under = np.array(below)[settled]
    over = ~inside[settled] & ~under
    assert inside_raw[settled].mean() < 0.7  # the raw band misses ...
    assert inside[settled].mean() == pytest.approx(0.8, abs=0.03)
    assert under.mean() == pytest.approx(0.1, abs=0.03) and over.mean() == pytest.approx(0.1, abs=0.03)
    # two-sided, the band's 80% holds, but nearly all of its misses are above p90
    below = []
    inside, _, _, _ = walk_forward(vol, 1.0, 3, PARAMS, model_window=60, seed=6, drift=0.006, below=below)
    under = np.array(below)[settled]
    assert inside[settled].mean() == pytest.approx(0.8, abs=0.03) and under.mean() < 0.03
