"""The track record on every forecast answer (showcase, keyed API, MCP, symbol page), its verdict rule, and the
evaluation data: raw vs served coverage, skill, the evaluation period and a calibration summary of the window."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support
from tests.gateway.test_mcp import call_tools, text

from candlecast.config import GatewaySettings
from candlecast.gateway.payloads.track import EDGE, NO_EDGE, TOO_FEW, WORSE, verdict
from candlecast.gateway.schemas import Forecast, Performance, PredictionDetail
from candlecast.paths import TOUCH_GRID, touch_scores
from candlecast.store.evaluations import evaluations_frame
from candlecast.store.path_evaluations import graded_touches
from candlecast.store.performance import calibration, performance

KEY = {"X-API-Key": "test-key-1"}


@pytest.mark.parametrize(
    ("n", "skill", "p", "expected"),
    [
        (30, 0.02, 0.01, EDGE),
        (30, 0.02, 0.05, NO_EDGE),  # not significant at 5%
        (30, -0.02, 0.2, NO_EDGE),
        (30, -0.02, 0.049, WORSE),
        (29, 0.5, 1e-9, TOO_FEW),  # fewer than 30 scored forecasts, however clear
        (100, None, 0.01, TOO_FEW),  # nothing to judge the skill by (no sample paths, no reference)
        (100, 0.1, None, TOO_FEW),
        (100, 0.0, 0.01, NO_EDGE),
    ],
)
def test_the_verdict_rule(n: int, skill: float | None, p: float | None, expected: str) -> None:
    assert verdict(n, skill, p, min_scored=30, alpha=0.05) == expected


def expected_record(store: Engine, symbol: str, model: str, timeframe: str) -> dict[str, Any]:
    """What the track record must say, from the all-steps trailing-30-day row of signal_performance."""
    [row] = performance(store, symbol=symbol, model_name=model, timeframe=timeframe, window="trailing_30d")
    return {
        "window": "trailing_30d", "scored_forecasts": row.n_predictions, "scored_steps": row.n_steps,
        "coverage": row.coverage, "coverage_low": row.coverage_low, "coverage_high": row.coverage_high,
        "coverage_raw": row.coverage_raw, "crps_skill": row.crps_skill, "dm_pvalue": row.dm_pvalue,
    }  # fmt: skip


def assert_record(record: dict[str, Any], store: Engine, symbol: str, model: str, verdict_: str) -> None:
    expected = expected_record(store, symbol, model, "1h")
    assert {k: record[k] for k in expected} == expected
    assert record["verdict"] == verdict_ and record["nominal_coverage"] == 0.8
    assert (record["min_scored"], record["alpha"]) == (30, 0.05)
    assert record["scored_through"] == "2024-03-01T12:00:00Z"  # the replay's scoring time, not the wall clock
    keys = list(record)  # the coverage's 90% interval, next to it
    assert keys[keys.index("coverage") : keys.index("coverage") + 3] == ["coverage", "coverage_low", "coverage_high"]
    # an interval once the forecasts span more than one horizon (24 hourly steps here), none before
    assert (record["coverage_low"] is None) == (record["scored_forecasts"] <= support.PRED_LEN["1h"])
    if record["coverage_low"] is not None:
        assert 0 <= record["coverage_low"] <= record["coverage"] <= record["coverage_high"] <= 1


def test_every_forecast_answer_carries_the_track_record_and_its_verdict(
    tracked_gateway: Any, tracked_store: Engine
) -> None:
    gw = tracked_gateway
    sharp = gw.get("/showcase/ml-prediction/BTCUSDT", params={"model_name": "sharp"}).json()
    Forecast.model_validate(sharp)
    assert_record(sharp["track_record"], tracked_store, "BTCUSDT", "sharp", EDGE)
    assert sharp["track_record"]["scored_forecasts"] == support.TRACKED_SLOTS
    assert sharp["track_record"]["crps_skill"] > 0.5 and sharp["track_record"]["dm_pvalue"] < 0.05
    wild = gw.get("/showcase/ml-prediction/BTCUSDT", params={"model_name": "wild"}).json()
    assert_record(wild["track_record"], tracked_store, "BTCUSDT", "wild", WORSE)
    few = gw.get("/showcase/ml-prediction/BTCUSDT").json()  # the baseline: 3 scored forecasts
    assert_record(few["track_record"], tracked_store, "BTCUSDT", "baseline", TOO_FEW)
    assert few["track_record"]["scored_forecasts"] == 3
    none_yet = gw.get("/showcase/ml-prediction/EURUSD", params={"timeframe": "1d"}).json()["track_record"]
    assert none_yet["scored_forecasts"] == 0 and none_yet["verdict"] == TOO_FEW and none_yet["coverage"] is None
    assert none_yet["coverage_low"] is None and none_yet["coverage_high"] is None

    detail = gw.get("/api/v1/predictions/BTCUSDT", params={"model_name": "sharp"}, headers=KEY).json()
    PredictionDetail.model_validate(detail)
    assert detail["track_record"] == sharp["track_record"]

    results = call_tools(
        f"{gw.url}/mcp",
        {
            "sharp": ("get_forecast", {"symbol": "BTCUSDT", "model_name": "sharp"}),
            "wild": ("get_forecast", {"symbol": "btcusdt", "model_name": "wild", "timeframe": "1h"}),
            "none": ("get_forecast", {"symbol": "EURUSD", "timeframe": "1d"}),
        },
    )
    assert results["sharp"].structured_content["track_record"] == sharp["track_record"]
    summary = text(results["sharp"])
    assert "Track record (trailing_30d): EDGE: 45 scored forecasts" in summary
    t = sharp["track_record"]  # every step in its band: the interval is a point (no variance)
    assert (t["coverage_low"], t["coverage"], t["coverage_high"]) == (1.0, 1.0, 1.0)
    a_few = few["track_record"]  # 3 forecasts of 24 steps: not even one horizon, no interval
    assert a_few["coverage"] is not None and a_few["coverage_low"] is None and a_few["coverage_high"] is None
    assert (
        f"p10-p90 coverage {t['coverage'] * 100:.1f}% (90% interval {t['coverage_low'] * 100:.1f}-"
        f"{t['coverage_high'] * 100:.1f}%, nominal 80.0%)"
    ) in summary
    skill = sharp["track_record"]["crps_skill"] * 100
    assert f"CRPS skill vs random walk +{skill:.1f}%" in summary
    assert "WORSE THAN RANDOM WALK" in text(results["wild"])
    assert "TOO FEW SCORES: no forecast of this series scored yet (a verdict needs 30)" in text(results["none"])

    page = gw.get("/symbol/BTCUSDT")
    embedded = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert embedded is not None
    series = json.loads(embedded.group(1))["series"]
    assert series["sharp|1h"]["track_record"] == sharp["track_record"]
    assert series["wild|1h"]["track_record"] == wild["track_record"]


def test_the_track_record_follows_the_settings_and_the_bodies_agree_across_replicas(tracked_url: str) -> None:
    url = "/showcase/ml-prediction/BTCUSDT?model_name=sharp"
    strict = support.settings_for(tracked_url, track_record_min_scored=50, track_record_window="all")
    with support.GatewayServer(strict) as one, support.GatewayServer(strict) as two:
        first, second = one.get(url), two.get(url)
        assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
        record = first.json()["track_record"]
        assert (record["window"], record["min_scored"], record["verdict"]) == ("all", 50, TOO_FEW)


def test_the_evaluation_data_has_raw_and_served_coverage_skill_verdict_period_and_a_windowed_calibration(
    tracked_gateway: Any, tracked_store: Engine
) -> None:
    gw = tracked_gateway
    every = gw.get("/api/v1/performance", params={"timeframe": "1d"}, headers=KEY).json()
    trailing = gw.get("/api/v1/performance", params={"timeframe": "1d", "window": "trailing_30d"}, headers=KEY).json()
    for body in (every, trailing):
        Performance.model_validate(body)
    [row_all], [row_30d] = every["rows"], trailing["rows"]
    assert (row_all["symbol"], row_all["n_predictions"], row_30d["n_predictions"]) == ("SPY", 2, 1)
    assert every["period"] == {"first_as_of": "2024-01-05T00:00:00Z", "last_as_of": "2024-02-15T00:00:00Z"}
    assert trailing["period"] == {"first_as_of": "2024-02-15T00:00:00Z", "last_as_of": "2024-02-15T00:00:00Z"}
    for key in ("coverage", "coverage_low", "coverage_high", "coverage_raw", "crps_skill", "crps_bp", "dm_pvalue"):
        assert key in row_all
    [stored] = performance(tracked_store, timeframe="1d")
    assert (row_all["coverage_low"], row_all["coverage_high"]) == (stored.coverage_low, stored.coverage_high)
    assert (row_all["coverage_low"], row_all["coverage_high"]) == (None, None)  # 2 forecasts of 10 steps: none
    assert (row_30d["coverage_low"], row_30d["coverage_high"]) == (None, None)
    assert row_all["verdict"] == TOO_FEW
    # the calibration summary covers the window asked for
    [calib_all] = every["calibration"]
    [calib_30d] = trailing["calibration"]
    [expected_all] = calibration(tracked_store, timeframe="1d", window="all")
    [expected_30d] = calibration(tracked_store, timeframe="1d", window="trailing_30d")
    assert (calib_all["n_steps"], calib_30d["n_steps"]) == (expected_all.n_steps, expected_30d.n_steps) == (20, 10)
    assert calib_30d["observed"] == [expected_30d.below_p10, expected_30d.below_p50, expected_30d.below_p90]
    hourly = gw.get("/api/v1/performance", params={"symbol": "BTCUSDT", "timeframe": "1h"}, headers=KEY).json()
    verdicts = {r["model_name"]: r["verdict"] for r in hourly["rows"]}
    assert verdicts == {"baseline": TOO_FEW, "kronos-small": TOO_FEW, "sharp": EDGE, "wild": WORSE}


def test_one_series_has_its_scores_per_horizon_step_in_the_api_the_mcp_tool_and_the_symbol_page(
    tracked_gateway: Any, tracked_store: Engine
) -> None:
    gw = tracked_gateway
    params = {"symbol": "BTCUSDT", "model_name": "wild", "timeframe": "1h", "window": "trailing_30d"}
    body = gw.get("/api/v1/performance", params=params, headers=KEY).json()
    Performance.model_validate(body)
    stored = performance(tracked_store, symbol="BTCUSDT", model_name="wild", timeframe="1h", window="trailing_30d",
                         step=None)  # fmt: skip
    per_step = sorted((r for r in stored if r.step > 0), key=lambda r: r.step)
    by_step = body["by_step"]
    assert by_step["step"] == list(range(1, support.PRED_LEN["1h"] + 1)) == [r.step for r in per_step]
    assert by_step["scored_steps"] == [r.n_steps for r in per_step]
    for name in ("coverage", "coverage_low", "coverage_high", "coverage_raw", "crps_skill", "dm_pvalue", "hit_rate"):
        expected = [None if v is None or math.isnan(v) else v for v in (getattr(r, name) for r in per_step)]
        assert by_step[name] == expected, name
    assert body["rows"] == [r for r in body["rows"] if r["model_name"] == "wild"] and len(body["rows"]) == 1
    # not one series asked: no per-step rows
    for partial in ({"symbol": "BTCUSDT"}, {"symbol": "BTCUSDT", "model_name": "wild"}, {"timeframe": "1h"}):
        assert gw.get("/api/v1/performance", params=partial, headers=KEY).json()["by_step"] is None

    results = call_tools(f"{gw.url}/mcp", {"wild": ("get_performance", {**params, "symbol": "btcusdt"})})
    assert results["wild"].structured_content["by_step"] == by_step
    assert f"and {len(per_step)} per horizon step (by_step)" in text(results["wild"])

    page = gw.get("/symbol/BTCUSDT")
    embedded = re.search(r'<script id="page-data" type="application/json">(.*?)</script>', page.text, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1))["series"]["wild|1h"]["by_step"] == by_step  # the track record's window


def test_the_calibration_summary_has_the_pit_histogram_of_the_window(
    tracked_gateway: Any, tracked_store: Engine
) -> None:
    scored = evaluations_frame(tracked_store)
    for window in ("all", "trailing_30d"):
        params = {"symbol": "BTCUSDT", "timeframe": "1h", "window": window}
        body = tracked_gateway.get("/api/v1/performance", params=params, headers=KEY).json()
        Performance.model_validate(body)
        rows = {c["model_name"]: c for c in body["calibration"]}
        for c in calibration(tracked_store, symbol="BTCUSDT", timeframe="1h", window=window):
            assert (rows[c.model_name]["n_pit"], rows[c.model_name]["pit_counts"]) == (c.n_pit, c.pit_counts)
        if window == "all":  # against the stored PITs, binned here
            for model, c in rows.items():
                mine = (scored.symbol == "BTCUSDT") & (scored.model_name == model) & (scored.timeframe == "1h")
                pit = scored[mine].pit.dropna().to_numpy()
                assert c["n_pit"] == len(pit) > 0
                assert c["pit_counts"] == np.histogram(pit, bins=10, range=(0, 1))[0].tolist()
    everything = {c["model_name"]: c for c in body["calibration"]}
    wild, sharp = everything["wild"]["pit_counts"], everything["sharp"]["pit_counts"]
    assert wild[0] > 0.8 * sum(wild)  # paths 5% above the close: the outcomes fall below nearly all of them
    assert sharp[0] < 0.2 * sum(sharp) and sharp[-1] < 0.2 * sum(sharp)


def test_the_touch_scores_of_the_evaluation_data_are_those_of_the_graded_questions_with_their_verdict(
    tracked_gateway: Any, tracked_store: Engine
) -> None:
    """``path_scores`` (stored by the scoring job) against the graded questions of the window, scored here."""
    compared = 0
    for symbol in (None, "BTCUSDT", "SPY"):
        for window in ("all", "trailing_30d"):
            params = {"window": window, **({"symbol": symbol} if symbol else {})}
            body = tracked_gateway.get("/api/v1/performance", params=params, headers=KEY).json()
            live = graded_touches(tracked_store, symbol=symbol, window=window)
            assert [(t["model_name"], t["timeframe"]) for t in body["path_scores"]] == [
                (g.model_name, g.timeframe) for g in live]  # fmt: skip
            for got, g in zip(body["path_scores"], live, strict=True):
                score = touch_scores(
                    g.as_of, g.prediction_id, g.p_touch, g.p_touch_rw, g.touched, g.paths, int(g.horizon.max())
                )
                assert (got["forecasts"], got["questions"]) == (score.forecasts, score.questions)
                assert got["grid"] == list(TOUCH_GRID) and got["uses"] == g.uses
                for name in ("brier", "brier_plain", "brier_rw", "skill", "dm_pvalue", "base_rate"):
                    value = getattr(score, name)  # NaN (e.g. too few origins for a p-value) is served as null
                    assert got[name] == (None if math.isnan(value) else pytest.approx(value, rel=1e-9)), name
                assert got["reliability"]["count"] == score.reliability["count"].tolist()
                assert list(got["reliability"]) == ["lower", "upper", "count", "mean_predicted", "observed"]
                assert list(got["decomposition"]) == ["reliability", "resolution", "uncertainty", "base_rate"]
                assert got["verdict"] == verdict(score.forecasts, got["skill"], got["dm_pvalue"], 30, 0.05)
                compared += 1
    assert compared >= 8
    btc = tracked_gateway.get("/api/v1/performance", params={"symbol": "BTCUSDT"}, headers=KEY).json()["path_scores"]
    assert {t["model_name"]: (t["forecasts"], t["verdict"]) for t in btc} == {
        "baseline": (2, TOO_FEW), "kronos-small": (2, TOO_FEW), "sharp": (45, EDGE), "wild": (45, WORSE),
    }  # fmt: skip
    sharp = tracked_gateway.get(
        "/api/v1/performance", params={"symbol": "BTCUSDT", "model_name": "sharp", "timeframe": "1h"}, headers=KEY
    ).json()["path_scores"]
    assert [(t["model_name"], t["timeframe"], t["forecasts"]) for t in sharp] == [("sharp", "1h", 45)]


def test_the_openapi_schema_documents_the_track_record_and_its_verdict_rule(gateway: Any) -> None:
    spec = gateway.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["Forecast"]["properties"]["track_record"] == {
        "$ref": "#/components/schemas/TrackRecord", "description": "How this model's past forecasts of this series did."
    }  # fmt: skip
    record = schemas["TrackRecord"]
    assert record["properties"]["verdict"]["enum"] == ["edge", "no edge", "worse than random walk", "too few scores"]
    for words in ("'edge' when crps_skill > 0 and dm_pvalue < alpha", "fewer than min_scored", "trailing_30d"):
        assert words in record["description"]
    assert "90% interval" in record["properties"]["coverage_low"]["description"]
    assert list(record["properties"])[3:6] == ["coverage", "coverage_low", "coverage_high"]
    assert GatewaySettings().track_record_min_scored == 30 and GatewaySettings().track_record_alpha == 0.05
