"""Fixtures of the web page tests: the gateway fixtures of tests/gateway/support.py, and headless Chromium
(the Debian package at /usr/bin/chromium driven by Playwright; never ``playwright install``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


def _load_support() -> ModuleType:
    """tests/gateway/support.py, loaded by path once (tests are not packages under --import-mode=importlib)."""
    if "gateway_test_support" not in sys.modules:
        path = Path(__file__).parents[1] / "gateway" / "support.py"
        spec = importlib.util.spec_from_file_location("gateway_test_support", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["gateway_test_support"]


support = _load_support()
seeded_url, own_seeded_url, store, gateway = support.seeded_url, support.own_seeded_url, support.store, support.gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
