"""Shared by the browser tests (imported as ``tests.gateway.pages.helpers``): viewports, opening a page and waiting
for its script, reading back the Plotly traces a chart holds, element geometry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def new_tab(browser: Any, base: str, viewport: dict[str, int] = DESKTOP, offline: bool = False) -> Any:
    """A tab on the gateway at ``base`` that collects console errors and failed requests (``tab.errors``); with
    ``offline`` every request to another host is refused and recorded (``tab.outside``)."""
    context = browser.new_context(viewport=viewport)
    tab = context.new_page()
    tab.errors = []
    tab.outside = []
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("requestfailed", lambda req: tab.errors.append(f"{req.url}: {req.failure}"))
    tab.base = base
    if offline:

        def only_the_gateway(route: Any) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:
                tab.outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_gateway)
    return tab


def open_page(tab: Any, path: str, status: int = 200) -> None:
    """Open ``path``, expecting ``status``, and wait for the page script; no console error but that status."""
    tab.errors.clear()
    response = tab.goto(tab.base + path)
    assert response is not None and response.status == status
    tab.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert [e for e in tab.errors if f"status of {status}" not in e] == []


def traces(tab: Any, element_id: str) -> dict[str, dict[str, Any]]:
    """The Plotly traces drawn in an element, by their ``meta`` name."""
    data = tab.evaluate(f"() => document.getElementById({element_id!r}).data")
    return {trace["meta"]: trace for trace in data}


def layout(tab: Any, element_id: str) -> dict[str, Any]:
    result: dict[str, Any] = tab.evaluate(f"() => document.getElementById({element_id!r}).layout")
    return result


def box(tab: Any, selector: str) -> dict[str, float]:
    found = tab.query_selector(selector)
    assert found is not None, selector
    result: dict[str, float] = found.bounding_box()
    return result


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def utc_strings(timestamps: Any) -> list[str]:
    """How the page hands timestamps to Plotly: ISO in UTC without the zone suffix."""
    return [datetime.fromisoformat(str(ts)).strftime("%Y-%m-%dT%H:%M:%S") for ts in timestamps]
