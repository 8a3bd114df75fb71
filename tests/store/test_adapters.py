"""model_adapters: at most one promoted adapter per (asset class, base model), promotion is atomic."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from candlecast.store.adapters import (
    get_adapter,
    insert_adapter,
    list_adapters,
    promote_adapter,
    promoted_adapter,
    promoted_adapters,
)

AS_OF = datetime(2019, 6, 1, tzinfo=UTC)


def add(engine: Engine, asset_class: str = "crypto", base: str = "kronos-small", promote: bool = False) -> int:
    return insert_adapter(
        engine, asset_class=asset_class, base_model=base, path=f"/adapters/{asset_class}", as_of=AS_OF,
        metrics={"gate": {"candidate": {"crps": 0.1}}}, promote=promote, reason="test",
    )  # fmt: skip


def test_promoting_an_adapter_demotes_the_previous_one_of_its_class_and_base_only(engine: Engine) -> None:
    first = add(engine, promote=True)
    other_class = add(engine, "equity", promote=True)
    other_base = add(engine, base="kronos-mini", promote=True)
    second = add(engine)
    assert promoted_adapter(engine, "crypto", "kronos-small").id == first  # type: ignore[union-attr]
    record = promote_adapter(engine, second, "better on both")
    assert record.promoted and record.reason == "better on both"
    assert not get_adapter(engine, first).promoted
    assert promoted_adapter(engine, "crypto", "kronos-small").id == second  # type: ignore[union-attr]
    assert {ac: r.id for ac, r in promoted_adapters(engine, "kronos-small").items()} == {
        "crypto": second,
        "equity": other_class,
    }
    assert promoted_adapter(engine, "crypto", "kronos-mini").id == other_base  # type: ignore[union-attr]
    third = add(engine, promote=True)  # inserted promoted: the same swap, in the insert's transaction
    assert promoted_adapter(engine, "crypto", "kronos-small").id == third  # type: ignore[union-attr]
    assert [r.id for r in list_adapters(engine, "crypto", "kronos-small")] == [third, second, first]
    assert get_adapter(engine, third).metrics == {"gate": {"candidate": {"crps": 0.1}}}
    assert get_adapter(engine, third).as_of == AS_OF


def test_concurrent_promotions_leave_exactly_one_promoted_adapter(engine: Engine) -> None:
    ids = [add(engine) for _ in range(6)]
    errors: list[BaseException] = []

    def promote(adapter_id: int) -> None:
        try:
            promote_adapter(engine, adapter_id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.promoted for r in list_adapters(engine, "crypto")) == 1


def test_unknown_adapters_and_empty_names_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="adapter_id: no model_adapters row with id 999"):
        promote_adapter(engine, 999)
    with pytest.raises(ValueError, match="asset_class and base_model"):
        add(engine, asset_class="")
    assert promoted_adapter(engine, "fx", "kronos-small") is None
