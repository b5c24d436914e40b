"""The collector paused for torch's imports comes back on, once per process (a training process
that left it off would keep every cycle it makes for days)."""

from __future__ import annotations

import gc

import pytest

from engine.run import heavy_imports as module
from engine.run.heavy_imports import heavy_imports


def test_the_collector_is_paused_for_the_imports_then_on_with_what_they_loaded_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module, "_done", False)
    frozen = gc.get_freeze_count()
    with heavy_imports():
        assert not gc.isenabled()
        loaded = [[i] for i in range(1000)]  # (lists are tracked; empty dicts are not)
    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(loaded)
    with heavy_imports():  # once per process: a later block leaves the collector alone
        assert gc.isenabled()


def test_a_collector_the_caller_had_off_stays_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "_done", False)
    gc.disable()
    try:
        with heavy_imports():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_import_that_fails_still_gives_the_collector_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "_done", False)
    with pytest.raises(ModuleNotFoundError), heavy_imports():
        import engine.no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert gc.isenabled()
