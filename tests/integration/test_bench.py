"""The benchmark scripts run (tiny settings); their figures live in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.common import ROOT


def test_gpu_script_smoke_runs_on_cpu(tmp_path: Path, project_env: dict[str, str]) -> None:
    out = subprocess.run([str(ROOT / "bench" / "gpu.sh"), "--smoke", "--device", "cpu"], capture_output=True,
                         text=True, env={**project_env, "XDG_CACHE_HOME": str(tmp_path)}, timeout=1200)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    table = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[0][:4] == ["| run", "loader", "epochs", "wall s"]
    runs = {row[0][2:]: row for row in table[1:]}
    # Every run of the plan finished its epoch and printed an accuracy, the dashboard one included.
    assert list(runs) == ["tutorial's loop x1", "tutorial x1, dataloader", "tutorial x1, tensor", "fast seed 0",
                          "fast seed 1", "fast seed 0, dashboard", "fast seed 0, --nproc 2", "fast95"], out.stdout  # fmt: skip
    assert all(row[2] == "1" and row[9].endswith("%") for row in runs.values()), out.stdout
    assert runs["tutorial x1, tensor"][1] == "tensor" and runs["fast95"][1] == "tensor"
    assert "fast: 2 seeds, test accuracy mean" in out.stdout
    assert "dashboard cost: fast images/s under the dashboard / headless (seed 0) = " in out.stdout
    assert "note: lr-find on fast: " in out.stdout and " steps in " in out.stdout
    sweep = next(line for line in out.stdout.splitlines() if line.startswith("note: sweep on fast: "))
    assert "2 of 2 forked trials completed;" in sweep and "trial 0 completed" in sweep and "trial 1 completed" in sweep


def test_benchmarks_say_in_one_line_what_data_a_fresh_clone_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torchvision.datasets

    from bench import common

    monkeypatch.setattr(common, "TARBALL_CANDIDATES", [tmp_path / "carry" / "cifar10-jpeg.tar.gz"])
    monkeypatch.setattr(common, "MINI", tmp_path / "shared" / "cifar10-mini")

    def offline(*_args: object, **_kw: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(SystemExit) as exited:
        common.unpack_cifar_jpeg(tmp_path / "out")
    message = str(exited.value.code)
    assert "cifar10-jpeg.tar.gz" in message and "download" in message and "\n" not in message
    assert common.need_mini() is False and "skipped" in capsys.readouterr().out


def test_the_suite_cost_script_counts_each_test_with_the_processes_it_started(tmp_path: Path) -> None:
    tests = tmp_path / "test_two.py"
    tests.write_text(
        "import subprocess, sys\n"
        "def test_starts_a_busy_child():\n"
        "    subprocess.run([sys.executable, '-c', 'sum(i * i for i in range(3_000_000))'], check=True)\n"
        "def test_does_nothing():\n"
        "    pass\n"
    )
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "suite_cost.py"), "--top", "5", "-n", "0",
                          "-p", "no:cacheprovider", str(tests)], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "pytest exit 0: 2 tests," in out.stdout and " CPU-s busy, " in out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    cpu = {row[0].rsplit("::", 1)[-1]: float(row[-1]) for row in rows if "test_two.py::" in row[0]}
    assert cpu["test_starts_a_busy_child"] > 0.05 > cpu["test_does_nothing"]  # the child's CPU is the test's
    assert ["other", "2"] in [row[:2] for row in rows]  # a stage of its own: outside tests/
