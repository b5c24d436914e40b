"""What the sweep's machinery costs per trial, apart from training.

1. Storage round trips: the calls the sweep makes for each trial (ask with the sampler, the
   trial-count check, two epochs reported with a pruning check, tell, the done check), with no
   training, timed at study sizes 10, 100 and 1,000 trials, for SQLite and the journal file.
2. Start-up: real tiny trials through ``cifar-tui sweep`` (``python -m engine`` each), from the
   trial's start in the study to its run's first event, and the sweep's wall time against the
   sum of its runs' own.

    python bench/sweep_overhead.py [--trials 1000] [--real 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from engine.sweep.plan import SweepPlan
from engine.sweep.space import parse_space
from engine.sweep.storage import open_study
from engine.sweep.trials import counted, finished

WINDOWS = (10, 100, 1000)


def storage_round_trips(folder: Path, storage: str, trials: int) -> dict[int, float]:
    """Milliseconds per trial of the sweep's own storage calls, averaged over the 10 trials
    before each study size in WINDOWS."""
    params = parse_space(["lr=log:0.01..1", "cutout=choice:0,8,12"])
    plan = SweepPlan("bench", str(folder), params, [], trials, storage=storage)
    plan.folder.mkdir(parents=True)
    study = open_study(plan)
    times: list[float] = []
    for _ in range(trials):
        began = time.perf_counter()
        trial = study.ask()
        values = {p.name: p.sample(trial) for p in params}
        trial.set_user_attr("run_dir", str(folder / f"t{trial.number}"))
        held = study.get_trials(deepcopy=False)
        assert len([t for t in counted(held) if t.number < trial.number]) < trials  # the count check
        accuracy = 0.5 + 0.1 * float(values["lr"])
        for epoch in (1, 2):
            trial.report(accuracy, epoch)
            trial.should_prune()
        trial.set_user_attr("best_accuracy", accuracy)
        study.tell(trial, accuracy)
        finished(study.get_trials(deepcopy=False))  # the done check after each trial
        times.append(time.perf_counter() - began)
    return {n: 1000 * statistics.mean(times[max(0, n - 10) : n]) for n in WINDOWS if n <= trials}


def real_trials(folder: Path, count: int) -> tuple[list[float], float, float]:
    """Start-up seconds of each real tiny trial; the sweep's wall time; the sum of its runs' own."""
    command = [sys.executable, "-m", "tui.cli", "sweep", "bench", "--runs-root", str(folder), "--data", "demo",
               "--weights", "none", "--train-limit", "32", "--test-limit", "32", "--batch-size", "16",
               "--device", "cpu", "--epochs", "1", "--space", "lr=log:0.01..0.1", "--trials", str(count),
               "--headless"]  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - began
    from engine.sweep.cli import read_plan

    plan = read_plan(folder / "bench.sweep")
    assert plan is not None
    startups, own = [], 0.0
    for trial in counted(open_study(plan).get_trials(deepcopy=False)):
        events = [json.loads(line) for line in (Path(trial.user_attrs["run_dir"]) / "events.jsonl").open()]
        startups.append(events[0]["t"] - trial.datetime_start.timestamp())
        own += events[-1]["t"] - events[0]["t"]
    return startups, wall, own


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--real", type=int, default=3, help="real tiny trials for the start-up figure (0: none)")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell here, not optimize
    print(f"machine: {machine()}")
    print("\n| storage | " + " | ".join(f"ms/trial at {n}" for n in WINDOWS if n <= args.trials) + " |")
    print("|---|" + "---|" * len([n for n in WINDOWS if n <= args.trials]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, storage in (("SQLite", ""), ("journal file", f"journal:{tmp}/study.journal")):
            per = storage_round_trips(Path(tmp) / name.split()[0], storage, args.trials)
            print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in per.values()) + " |", flush=True)
        if args.real:
            startups, wall, own = real_trials(Path(tmp) / "real", args.real)
            print(f"\nreal trials: {args.real}, start-up (trial start -> run's first event) "
                  f"mean {statistics.mean(startups):.2f} s (min {min(startups):.2f}, max {max(startups):.2f}); "
                  f"sweep wall {wall:.1f} s against {own:.1f} s in the runs themselves")  # fmt: skip


if __name__ == "__main__":
    main()
