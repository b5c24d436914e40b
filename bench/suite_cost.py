"""What the test suite costs and where: runs pytest (the README's command, or the arguments
given) and prints its wall time, the machine's busy and idle CPU-seconds over the run (from
/proc/stat: on 2 cores, a five-minute suite has about 560 busy CPU-seconds to spend), the
CPU-seconds per stage and per file (each test's worker plus the child processes it reaped), and
the costliest tests. Compare runs taken close together: this machine's speed drifts by up to
40% within hours (docs/testing.md).

    python bench/suite_cost.py                      # the whole suite
    python bench/suite_cost.py -n 0 tests/unit      # any pytest arguments
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, machine
from bench.suite_timeline import TIMELINE

STAGES = ("unit", "integration", "system")


def busy_idle() -> tuple[float, float]:
    """The machine's busy and idle CPU-seconds since boot (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / tick, idle / tick


def table(rows: dict[str, list[float]], title: str, limit: int) -> list[str]:
    """Rows of (tests, wall, CPU) by key, costliest first."""
    lines = [f"{title:<90} {'tests':>5} {'wall s':>7} {'CPU s':>7}"]
    for key, (count, wall, cpu) in sorted(rows.items(), key=lambda kv: -kv[1][2])[:limit]:
        lines.append(f"{key[:90]:<90} {int(count):>5} {wall:>7.1f} {cpu:>7.1f}")
    return lines


def report(timeline: list[dict[str, Any]], limit: int) -> list[str]:
    by_stage: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    by_file: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    tests: dict[str, list[float]] = {}
    for t in timeline:
        test_id, wall, cpu = str(t["id"]), float(t["wall"]), float(t["self"]) + float(t["kids"])
        path = test_id.split("::")[0]
        stage = next((s for s in STAGES if f"/{s}/" in f"/{path}"), "other")
        for row in (by_stage[stage], by_file[path]):
            row[0], row[1], row[2] = row[0] + 1, row[1] + wall, row[2] + cpu
        tests[f"{path.rsplit('/', 1)[-1]}::{test_id.partition('::')[2]}"] = [1, wall, cpu]
    counted = sum(row[2] for row in by_stage.values())
    return [f"counted per test: {counted:.0f} CPU-s (the rest: pytest's start and collection, and processes "
            "no test's worker reaped)", "", *table(by_stage, "stage", 10), "", *table(by_file, "file", limit), "",
            *table(tests, "test", limit)]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s [--top N] [PYTEST ARGS]")
    parser.add_argument("--top", type=int, default=15, help="files and tests listed (default 15)")
    ours, pytest_args = parser.parse_known_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        timeline_file = Path(tmp) / "timeline.jsonl"
        env = {**os.environ, TIMELINE: str(timeline_file),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # fmt: skip
        busy0, idle0 = busy_idle()
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "bench.suite_timeline", *pytest_args],
                              cwd=ROOT, env=env)  # fmt: skip
        wall = time.monotonic() - t0
        busy1, idle1 = busy_idle()
        lines = timeline_file.read_text().splitlines() if timeline_file.is_file() else []
    timeline = [json.loads(line) for line in lines]
    print(f"\npytest exit {done.returncode}: {len(timeline)} tests, {wall:.0f} s wall; the machine "
          f"{busy1 - busy0:.0f} CPU-s busy, {idle1 - idle0:.0f} idle")  # fmt: skip
    for line in report(timeline, ours.top):
        print(line)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
