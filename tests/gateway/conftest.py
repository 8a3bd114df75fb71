"""Fixtures of the gateway tests: a seeded database per module, a real gateway server per test (support.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _load_support() -> ModuleType:
    """tests/gateway/support.py, loaded by path once (tests are not packages under --import-mode=importlib)."""
    if "gateway_test_support" not in sys.modules:
        path = Path(__file__).with_name("support.py")
        spec = importlib.util.spec_from_file_location("gateway_test_support", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["gateway_test_support"]


support = _load_support()
seeded_url, own_seeded_url, store, gateway = support.seeded_url, support.own_seeded_url, support.store, support.gateway
