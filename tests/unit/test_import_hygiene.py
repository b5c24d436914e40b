"""Layer boundaries: the engine never needs textual; the dashboard process never needs torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.common import ROOT
from tests.unit.test_layers import modules

ENTRY_POINTS = ("engine.__main__", "engine.session.worker", "engine.ranks.torchrun")  # run code when imported
ENGINE_MODULES = sorted(m for m in modules() if m.startswith("engine.") and m not in ENTRY_POINTS)
TUI_MODULES = sorted(m for m in modules() if m.startswith("tui.") and m != "tui.__main__")
TORCH_FREE = sorted(m for m in ENGINE_MODULES if m.startswith("engine.run.") or m in
                    ("engine.ranks.plan", "engine.options", "engine.headless", "engine.cli",
                     "engine.session.base", "engine.session.attached", "engine.session.launch",
                     "engine.session.child"))  # fmt: skip


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_engine_does_not_import_textual() -> None:
    # One interpreter for all engine modules: each pulls in torch, which takes seconds.
    assert "textual" not in loaded_after_import(", ".join(ENGINE_MODULES))


@pytest.mark.parametrize("module", TUI_MODULES)
def test_dashboard_module_does_not_import_torch(module: str) -> None:
    assert "torch" not in loaded_after_import(module)


def test_what_the_dashboard_process_uses_of_the_engine_stays_torch_free() -> None:
    # The app validates options, launches, attaches and lists runs without torch: that must be instant.
    assert "torch" not in loaded_after_import(", ".join(TORCH_FREE))
