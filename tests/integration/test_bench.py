"""The benchmark scripts run (tiny settings); their figures live in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.common import ROOT


def test_gpu_script_smoke_runs_on_cpu(tmp_path: Path, project_env: dict[str, str]) -> None:
    out = subprocess.run([str(ROOT / "bench" / "gpu.sh"), "--smoke", "--device", "cpu"], capture_output=True,
                         text=True, env={**project_env, "XDG_CACHE_HOME": str(tmp_path)}, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    table = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[0][:4] == ["| run", "loader", "epochs", "wall s"]
    runs = {row[0][2:]: row for row in table[1:]}
    # Every run of the plan finished its epoch and printed an accuracy, the dashboard one included.
    assert list(runs) == ["seed's loop x1", "tutorial x1, dataloader", "tutorial x1, tensor", "fast seed 0",
                          "fast seed 1", "fast seed 0, dashboard", "fast seed 0, --nproc 2", "fast95"], out.stdout  # fmt: skip
    assert all(row[2] == "1" and row[9].endswith("%") for row in runs.values()), out.stdout
    assert runs["tutorial x1, tensor"][1] == "tensor" and runs["fast95"][1] == "tensor"
    assert "fast: 2 seeds, test accuracy mean" in out.stdout
    assert "dashboard cost: fast images/s under the dashboard / headless (seed 0) = " in out.stdout
