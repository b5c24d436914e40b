"""Layer boundaries: the engine never needs textual; the dashboard process never needs torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE_MODULES = sorted(
    f"engine.{p.stem}" for p in (ROOT / "engine").glob("*.py") if p.stem not in ("__main__", "worker")
)
TUI_MODULES = ["tui.app", "tui.cli", "tui.state", "tui.screens"]
TUI_MODULES += sorted(f"tui.widgets.{p.stem}" for p in (ROOT / "tui" / "widgets").glob("*.py"))


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


def test_engine_config_and_cli_stay_torch_free() -> None:
    # The app validates options before starting the training process: that must be instant.
    for module in ("engine.run.config", "engine.cli", "engine.run.events", "engine.run.controls"):
        assert "torch" not in loaded_after_import(module), module
