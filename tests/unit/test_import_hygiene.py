"""Layer boundaries: the engine never needs textual; the dashboard process never needs torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_no_dashboard_module_imports_torch() -> None:
    # All of them in one interpreter: what none of them loads together, none loads alone (an import
    # runs the same code either way), at the cost of one interpreter instead of one each.
    assert "torch" not in loaded_after_import(", ".join(TUI_MODULES))


def test_launching_ranks_on_real_data_keeps_the_dashboard_process_torch_free(
    mini_data: Path, tmp_path: Path, project_env: dict[str, str]
) -> None:
    # --nproc 2 on an image folder: the checks before the launch decode the data, in a child process.
    code = ("import sys; from tui.options import dashboard_parser; from engine.cli import launch_plan; "
            f"argv = ['--nproc', '2', '--data', {str(mini_data)!r}, '--device', 'cpu', "
            f"'--train-limit', '64', '--test-limit', '32', '--run-dir', {str(tmp_path / 'run')!r}]; "
            "cfg, nproc = launch_plan(dashboard_parser(argv).parse_args(argv)); "
            "print(nproc, 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=project_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2", "False"]
    # And a refusal of the checks is still one line before anything starts.
    bad = code.replace(str(mini_data), str(tmp_path))
    (tmp_path / "train").mkdir()
    out = subprocess.run([sys.executable, "-c", bad], capture_output=True, text=True, cwd=tmp_path, env=project_env)
    assert out.returncode != 0 and "ValueError" in out.stderr


def test_what_the_dashboard_process_uses_of_the_engine_stays_torch_free() -> None:
    # The app validates options, launches, attaches and lists runs without torch: that must be instant.
    assert "torch" not in loaded_after_import(", ".join(TORCH_FREE))
