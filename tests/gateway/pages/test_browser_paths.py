"""The symbol page's level box in a real browser: enter a level, read the touch probability with its standard error
and number of paths, and see exactly the sample paths that touch the level highlighted on the fan chart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.engine import Engine
from tests.gateway import support
from tests.gateway.pages.helpers import new_tab, open_page, traces

from candlecast import paths
from candlecast.store.predictions import latest_prediction

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any, gateway: Any) -> Iterator[Any]:
    tab = new_tab(browser, gateway.url)
    yield tab
    tab.context.close()


def test_entering_a_level_shows_its_touch_probability_and_highlights_the_touching_paths(
    page: Any, store: Engine, artifacts: Path
) -> None:
    stored = latest_prediction(store, "BTCUSDT", "baseline", "1h", with_samples=True)
    assert stored is not None and stored.samples is not None
    level = round(float(np.quantile(stored.samples.max(axis=1), 0.6)), 2)
    expected = paths.touch(stored.samples, level, stored.pred_len, above=True)
    touching = np.flatnonzero(stored.samples.max(axis=1) >= level)

    open_page(page, "/symbol/BTCUSDT")
    page.fill("#ask-level", str(level))
    page.click("#ask-form button[type='submit']")
    page.wait_for_selector("#ask-result[data-probability]:not([data-probability=''])")
    text = page.inner_text("#ask-result")
    assert f"{expected.probability * 100:.1f}% ± {expected.standard_error * 100:.1f}%" in text
    assert f"{len(touching)} of 32 sample paths touch it" in text and "closes" in text

    drawn = page.evaluate("() => document.getElementById('fan').data")
    highlighted = [t for t in drawn if t["meta"] == "touching"]
    assert len(highlighted) == len(touching) > 0
    for trace, i in zip(highlighted, touching, strict=True):
        assert trace["y"][1:] == support.rounded(stored.samples[i], stored.last_close)
        assert max(trace["y"][1:]) >= level
    assert traces(page, "fan")["level"]["y"] == [level, level]
    page.screenshot(path=str(artifacts / "symbol-touch.png"), full_page=True)

    page.click("#model-toggle button[data-model='kronos-small']")  # another series: the highlight goes
    assert not [t for t in page.evaluate("() => document.getElementById('fan').data") if t["meta"] == "touching"]
    page.fill("#ask-level", "0")  # the input allows it; the gateway refuses it
    page.click("#ask-form button[type='submit']")
    page.wait_for_function("() => document.getElementById('ask-result').textContent.startsWith('level')")
    assert [e for e in page.errors if "status of 422" not in e] == []
