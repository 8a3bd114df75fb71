"""Fixtures of the gateway tests: a seeded database per module, a real gateway server per test (support.py)."""

from __future__ import annotations

from tests.gateway.support import (  # noqa: F401 - fixtures re-exported
    extended_gateway,
    extended_url,
    gateway,
    own_seeded_url,
    seeded_url,
    store,
    tracked_gateway,
    tracked_store,
    tracked_url,
)
