"""The registry loads each configured model once; failures are recorded with their reason."""

from __future__ import annotations

import pytest

from candlecast.config import ModelSpec, Settings
from candlecast.errors import ModelUnavailableError
from candlecast.models.registry import Registry, UnknownModelError


def settings(models: str, **sources: ModelSpec) -> Settings:
    return Settings(models=models, model_sources=sources)


def test_an_unloadable_model_is_recorded_with_its_reason_and_the_others_load(tmp_path: pytest.TempPathFactory) -> None:
    missing = tmp_path / "no-such-folder"  # type: ignore[operator]
    broken = ModelSpec(name="kronos-broken", kind="kronos", model_source=str(missing), tokenizer_source=str(missing))
    no_chronos = ModelSpec(name="chronos-2", kind="chronos2", model_source=str(missing))
    registry = Registry.from_settings(
        settings("kronos-broken,baseline,chronos-2,nope", **{"kronos-broken": broken, "chronos-2": no_chronos})
    )
    assert registry.names() == ["kronos-broken", "baseline", "chronos-2", "nope"]
    assert registry.get("baseline").name == "baseline"
    assert registry.default_name() == "baseline"  # the first model that loaded
    reasons = {e.name: e.reason for e in registry.entries() if not e.available}
    assert str(missing) in reasons["kronos-broken"]
    assert "Chronos-2 weights" in reasons["chronos-2"] and str(missing) in reasons["chronos-2"]
    assert "unknown model 'nope'" in reasons["nope"]
    with pytest.raises(ModelUnavailableError, match="Chronos-2 weights") as info:
        registry.get("chronos-2")
    assert info.value.reason == reasons["chronos-2"]


def test_asking_for_a_model_that_is_not_configured_is_an_unknown_model_error() -> None:
    registry = Registry.from_settings(settings("baseline"))
    with pytest.raises(UnknownModelError, match="configured models: \\['baseline'\\]"):
        registry.get("kronos-small")


def test_the_baseline_method_can_be_chosen_by_its_source() -> None:
    spec = ModelSpec(name="baseline-gauss", kind="baseline", model_source="gaussian")
    registry = Registry.from_settings(settings("baseline-gauss", **{"baseline-gauss": spec}))
    assert registry.get("baseline-gauss").version.startswith("gaussian")


def test_a_local_kronos_checkpoint_loads_with_its_size_and_weights_hash(tiny_kronos: tuple[str, str]) -> None:
    model, tokenizer = tiny_kronos
    spec = ModelSpec(name="kronos-tiny", kind="kronos", model_source=model, tokenizer_source=tokenizer, max_context=64)
    registry = Registry.from_settings(settings("kronos-tiny", **{"kronos-tiny": spec}))
    info = registry.get("kronos-tiny").info()
    assert info.kind == "kronos" and info.context_length == 64 and info.gives_ohlc
    assert info.parameters > 0
    assert info.version.startswith("sha256:")
