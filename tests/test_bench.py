"""The benchmark scripts run (tiny settings); their figures live in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT


def test_gpu_script_smoke_runs_on_cpu(tmp_path: Path, project_env: dict[str, str]) -> None:
    out = subprocess.run([str(ROOT / "bench" / "gpu.sh"), "--smoke", "--device", "cpu"], capture_output=True,
                         text=True, env={**project_env, "XDG_CACHE_HOME": str(tmp_path)}, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    table = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | loader | epochs | wall s")
    assert table[1].startswith("| tutorial x1 | dataloader | 1 |") and table[2].startswith("| fast x1 | tensor | 1 |")
