"""The track record on the symbol page and the evaluation page's served vs raw coverage (the served one with its 90%
interval), skill, verdicts, period and windowed calibration, in a real browser (on the seeded replay plus
``support.seed_track_records``).

Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from tests.gateway.pages.helpers import PHONE, new_tab, open_page, traces

from candlecast.paths import touch_scores
from candlecast.store.path_evaluations import graded_touches
from candlecast.store.performance import calibration, performance

pytestmark = pytest.mark.browser


@pytest.fixture
def tab(browser: Any, tracked_gateway: Any) -> Iterator[Any]:
    page = new_tab(browser, tracked_gateway.url)
    yield page
    page.context.close()


def percent(value: float, signed: bool = False) -> str:
    return f"{value * 100:{'+' if signed else ''}.1f}%"


def test_the_symbol_page_shows_the_track_record_of_the_series_shown(
    tab: Any, tracked_store: Engine, artifacts: Path
) -> None:
    open_page(tab, "/symbol/BTCUSDT?model_name=sharp&timeframe=1h")
    record = tab.locator("#track-record")
    assert record.is_visible() and record.get_attribute("data-verdict") == "edge"
    [row] = performance(tracked_store, symbol="BTCUSDT", model_name="sharp", timeframe="1h", window="trailing_30d")
    shown = record.inner_text()
    assert shown.startswith("Track record (trailing 30 days): edge.")
    assert f"{row.n_predictions} scored forecasts" in shown and row.n_predictions == 45
    assert row.coverage_low is not None and row.coverage_high is not None
    assert (
        f"{percent(row.coverage)} (90% interval {row.coverage_low * 100:.1f}–{percent(row.coverage_high)}) of "
        "realised closes inside the p10–p90 band (nominal 80.0%"
    ) in shown
    assert f"CRPS skill vs a random walk {percent(row.crps_skill, signed=True)}" in shown
    assert "forecasts made 2024-02-27 04:00 UTC → 2024-02-29 00:00 UTC" in shown
    assert tab.locator("#track-record .verdict.edge").inner_text() == "edge"
    tab.screenshot(path=str(artifacts / "symbol-track-record.png"), full_page=True)

    tab.click("#model-toggle button[data-model='wild']")
    assert record.get_attribute("data-verdict") == "worse than random walk"
    assert "Track record (trailing 30 days): worse than random walk." in record.inner_text()
    [wild] = performance(tracked_store, symbol="BTCUSDT", model_name="wild", timeframe="1h", window="trailing_30d")
    assert wild.coverage_low is not None and wild.coverage_high is not None
    assert wild.coverage_high > wild.coverage + 0.02  # a real interval (clipped at 0 below)
    interval = f"{percent(wild.coverage)} (90% interval {wild.coverage_low * 100:.1f}–{percent(wild.coverage_high)}) of"
    assert interval in record.inner_text()
    tab.click("#model-toggle button[data-model='baseline']")
    assert record.get_attribute("data-verdict") == "too few scores"
    assert "3 scored forecasts" in record.inner_text() and "A verdict needs 30 scored forecasts." in record.inner_text()
    [few] = performance(tracked_store, symbol="BTCUSDT", model_name="baseline", timeframe="1h", window="trailing_30d")
    assert few.coverage_low is None  # 3 forecasts of 24 steps, not one horizon: no interval, and none shown
    assert f"{percent(few.coverage)} of realised closes" in record.inner_text()
    assert "90% interval" not in record.inner_text()
    tab.click("#timeframe-toggle button[data-timeframe='1d']")  # BTCUSDT's daily forecast: nothing scored yet
    assert "No forecast of this series by this model has been scored yet (a verdict needs 30)." in record.inner_text()
    assert tab.errors == []


def test_the_symbol_page_plots_the_track_record_per_horizon_step_of_the_series_shown(
    tab: Any, tracked_store: Engine, artifacts: Path
) -> None:
    open_page(tab, "/symbol/BTCUSDT?model_name=sharp&timeframe=1h")
    for model in ("sharp", "wild"):
        if model == "wild":
            tab.click("#model-toggle button[data-model='wild']")
        rows = performance(tracked_store, symbol="BTCUSDT", model_name=model, timeframe="1h", window="trailing_30d",
                           step=None)  # fmt: skip
        steps = sorted((r for r in rows if r.step > 0), key=lambda r: r.step)
        assert tab.locator("#by-step-box").is_visible()
        drawn = traces(tab, "by-step")
        served, raw, skill = drawn["step-coverage"], drawn["step-coverage-raw"], drawn["step-skill"]
        assert served["x"] == raw["x"] == skill["x"] == [r.step for r in steps] and len(steps) == 24
        assert served["y"] == pytest.approx([r.coverage for r in steps], rel=1e-12)
        assert raw["y"] == pytest.approx([r.coverage_raw for r in steps], rel=1e-12)
        assert skill["y"] == pytest.approx([r.crps_skill for r in steps], rel=1e-12)
        errors = served["error_y"]  # each step's 90% interval around its coverage
        for at, r in enumerate(steps):
            if r.coverage_low is None or r.coverage_high is None:
                assert errors["array"][at] is None
            else:
                assert errors["array"][at] == pytest.approx(r.coverage_high - r.coverage, rel=1e-9)
                assert errors["arrayminus"][at] == pytest.approx(r.coverage - r.coverage_low, rel=1e-9)
        counts = [r.n_steps for r in steps]
        assert f"24 horizon steps with scores, {min(counts)}–{max(counts)} scored forecasts each" in tab.inner_text(
            "#by-step-note"
        )
    tab.screenshot(path=str(artifacts / "symbol-by-step.png"), full_page=True)
    tab.click("#model-toggle button[data-model='baseline']")
    tab.click("#timeframe-toggle button[data-timeframe='1d']")  # BTCUSDT's daily forecast: nothing scored yet
    assert not tab.locator("#by-step-box").is_visible()
    assert tab.errors == []


def test_the_evaluation_page_shows_served_and_raw_coverage_skill_verdicts_the_period_and_a_windowed_calibration(
    tab: Any, tracked_store: Engine, artifacts: Path
) -> None:
    for window in ("all", "trailing_30d"):
        open_page(tab, f"/evaluation?window={window}")
        rows = performance(tracked_store, window=window)
        coverage = traces(tab, "coverage")
        for row in rows:
            group = f"{row.model_name} {row.timeframe}"
            served, raw = coverage[f"coverage:{group}"], coverage[f"coverage_raw:{group}"]
            assert served["y"][served["x"].index(row.symbol)] == pytest.approx(row.coverage, rel=1e-12)
            assert raw["y"][raw["x"].index(row.symbol)] == pytest.approx(row.coverage_raw, rel=1e-12)
            cells = tab.eval_on_selector_all(
                f"#scores tr[data-symbol='{row.symbol}'][data-model='{row.model_name}']"
                f"[data-timeframe='{row.timeframe}'] td",
                "cells => cells.map(c => c.innerText.trim())",
            )
            assert cells[3] == str(row.n_predictions)
            interval = (
                "" if row.coverage_low is None else f"\n{row.coverage_low * 100:.1f}–{percent(row.coverage_high)}"
            )
            assert cells[5:8] == [
                percent(row.coverage) + interval,
                percent(row.coverage_raw),
                percent(row.crps_skill, True),
            ]
            errors = served["error_y"]  # the interval as an error bar on the served coverage
            at = served["x"].index(row.symbol)
            if row.coverage_low is None:
                assert errors["array"][at] is None and errors["arrayminus"][at] is None
            else:
                assert errors["array"][at] == pytest.approx(row.coverage_high - row.coverage, rel=1e-9)
                assert errors["arrayminus"][at] == pytest.approx(row.coverage - row.coverage_low, rel=1e-9)
        drawn = traces(tab, "calibration")
        for c in calibration(tracked_store, window=window):
            trace = drawn[f"calibration:{c.model_name} {c.timeframe}"]
            assert trace["y"] == pytest.approx([c.below_p10, c.below_p50, c.below_p90], rel=1e-12)
            assert f"(n={c.n_steps})" in trace["name"]
        daily = drawn["calibration:baseline 1d"]["name"]
        assert daily == ("baseline 1d (n=20)" if window == "all" else "baseline 1d (n=10)")  # the window applies
        pit = traces(tab, "pit")  # the PIT histogram of the same window, as densities (1 = calibrated)
        assert pit["pit-uniform"]["y"] == [1, 1]
        for c in calibration(tracked_store, window=window):
            trace = pit[f"pit:{c.model_name} {c.timeframe}"]
            assert trace["y"] == pytest.approx([n / c.n_pit * 10 for n in c.pit_counts], rel=1e-12)
            assert trace["customdata"] == c.pit_counts and f"(n={c.n_pit})" in trace["name"]
        assert pit["pit:wild 1h"]["y"][0] > 8  # outcomes below all of wild's paths: the first tenth
    period = tab.inner_text("#period")
    assert period.startswith("Evaluation period: forecasts made 2024-02-15 00:00 UTC → 2024-02-29 12:00 UTC")
    verdicts = tab.eval_on_selector_all(
        "#scores tr[data-symbol='BTCUSDT'][data-timeframe='1h']",
        "rs => rs.map(r => [r.dataset.model, r.dataset.verdict])",
    )
    assert dict(verdicts) == {
        "baseline": "too few scores", "kronos-small": "too few scores", "sharp": "edge",
        "wild": "worse than random walk",
    }  # fmt: skip
    headers = tab.eval_on_selector_all("#scores th", "hs => hs.map(h => h.innerText)")
    assert headers[5:10] == ["coverage", "raw coverage", "CRPS skill", "DM p", "verdict"] and "CRPS" not in headers
    tab.screenshot(path=str(artifacts / "evaluation-track.png"), full_page=True)
    tab.set_viewport_size(PHONE)
    open_page(tab, "/evaluation?window=trailing_30d")
    assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    tab.screenshot(path=str(artifacts / "evaluation-track-phone.png"), full_page=True)


def test_the_evaluation_page_plots_the_reliability_of_touch_probabilities_and_their_brier_score(
    tab: Any, tracked_store: Engine, artifacts: Path
) -> None:
    """The graded touch questions of the tracked replay, summarised independently here, against what the page
    draws and says."""
    graded = {(g.model_name, g.timeframe): g for g in graded_touches(tracked_store)}
    assert {("sharp", "1h"), ("wild", "1h")} <= set(graded)
    open_page(tab, "/evaluation")
    drawn = traces(tab, "touch-reliability")
    assert drawn["touch-diagonal"]["x"] == [0, 1] and drawn["touch-diagonal"]["y"] == [0, 1]
    for (model, tf), g in graded.items():
        score = touch_scores(
            g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max())
        )
        table = score.reliability
        full = table["count"] > 0
        trace = drawn[f"touch:{model} {tf}"]
        assert trace["x"] == pytest.approx(table["mean_predicted"][full].tolist(), rel=1e-12)
        assert trace["y"] == pytest.approx(table["observed"][full].tolist(), rel=1e-12)
        assert trace["customdata"] == table["count"][full].tolist()
        assert f"(n={score.questions})" in trace["name"] and score.questions == 6 * score.forecasts
        cells = tab.eval_on_selector_all(
            f"#touch-scores tr[data-model='{model}'][data-timeframe='{tf}'] td", "cs => cs.map(c => c.innerText.trim())"
        )
        assert cells[2:6] == [str(score.forecasts), str(score.questions), f"{score.brier:.4f}", f"{score.brier_rw:.4f}"]
        assert cells[6] == percent(score.skill, signed=True)
        said = tab.inner_text(f"#touch-verdicts li[data-model='{model}'][data-timeframe='{tf}']")
        verdict = cells[8]
        if verdict == "no edge":
            assert "no edge: its touch probabilities score no better than the random walk's." in said
        elif verdict == "edge":
            assert score.skill > 0 and "beat the random walk's" in said
        elif verdict == "worse than random walk":
            assert score.skill < 0 and "worse than the random walk's" in said
        else:
            assert verdict == "too few scores" and "too few graded forecasts" in said
    # paths hugging what happened beat the random walk; paths 5% above the last close lose to it
    verdicts = tab.eval_on_selector_all(
        "#touch-scores tr", "rs => rs.map(r => [r.dataset.model + ' ' + r.dataset.timeframe, r.dataset.verdict])"
    )
    assert dict(verdicts)["sharp 1h"] == "edge" and dict(verdicts)["wild 1h"] == "worse than random walk"
    assert dict(verdicts)["baseline 1d"] == "too few scores"
    tab.screenshot(path=str(artifacts / "evaluation-touches.png"), full_page=True)
    assert tab.errors == []
