"""What a training process costs before and around its first steps, with torch's imports under a
running garbage collector (as before engine/run/heavy_imports.py) and with the collector paused
for them and what they loaded frozen (as now): the CPU-seconds of importing the trainer alone,
and of a whole tiny run (demo data, 128 images, one epoch, one torch thread), each measured
``--repeat`` times, alternating, medians printed. The suite starts about a hundred such processes.

    python bench/start_cost.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, machine

IMPORT_ONLY = {
    "collector running": "from engine.train.trainer import Trainer",
    "paused, frozen": "from engine.run.heavy_imports import heavy_imports\n"
    "with heavy_imports():\n    from engine.train.trainer import Trainer",
}
# The same ``python -m engine`` run; "collector running" marks the once-per-process block as
# already done, so the trainer's imports run as they did before it.
RUN = "import runpy, sys\n{prep}sys.argv = ['engine', *sys.argv[1:]]\nrunpy.run_module('engine', run_name='__main__')"
RUN_PREP = {"collector running": "import engine.run.heavy_imports as h\nh._done = True\n", "paused, frozen": ""}
RUN_ARGS = ["--data", "demo", "--weights", "none", "--train-limit", "128", "--test-limit", "64", "--batch-size", "16",
            "--epochs", "1", "--device", "cpu"]  # fmt: skip


def cpu_of(code: str, args: list[str]) -> float:
    """CPU-seconds (user + system) of ``python -c code args`` and what it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        for what, codes in (("import the trainer", IMPORT_ONLY), ("a tiny run, whole", None)):
            samples: dict[str, list[float]] = {name: [] for name in IMPORT_ONLY}
            for i in range(repeat):
                for name in samples:
                    if codes is not None:
                        samples[name].append(cpu_of(codes[name], []))
                    else:
                        run_dir = str(Path(tmp) / f"{name[:6]}-{i}")
                        code = RUN.format(prep=RUN_PREP[name])
                        samples[name].append(cpu_of(code, [*RUN_ARGS, "--run-dir", run_dir]))
            for name, values in samples.items():
                print(f"{what:20s} {name:18s} median {statistics.median(values):5.2f} CPU-s "
                      f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
