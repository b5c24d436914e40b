"""``--seeds K``: the best few completed trials trained again with other seeds, to tell a real
difference from noise. A trial's own run is its first seed; seeds 1..K-1 are plain runs,
``RUNS/<sweep>-tNNN-sS``, with the trial's values and ``--seed S`` (the RNG seed: weights, data
order, augmentation and the limited subset). What each reached is kept in
``RUNS/<sweep>.sweep/seeds.json``; the same command again runs only the seeds that did not
finish. The verdict: a gap between the best two smaller than their spread is noise."""

from __future__ import annotations

import concurrent.futures
import signal
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.run import events as ev
from engine.run.fileio import atomic_write_json
from engine.run.rundir import read_events
from engine.sweep.plan import SEEDS_FILE, SweepPlan
from engine.sweep.process import RunProcess, Slots, start_run
from engine.sweep.space import trial_argv
from engine.sweep.storage import open_study
from engine.sweep.table import best_first
from engine.sweep.trials import counted


@dataclass
class Seeded:
    """One trial's values trained with several seeds: the best test accuracy of each."""

    number: int
    values: dict[str, Any]
    runs: dict[int, Path]

    def results(self) -> dict[int, float]:
        return {seed: acc for seed, run in self.runs.items() if (acc := completed_best(run)) is not None}


def completed_best(run: Path) -> float | None:
    """The best test accuracy of a run that completed; None for one that did not (yet)."""
    try:
        events = read_events(run)
    except (OSError, ValueError):
        return None
    ends = [e for e in events if isinstance(e, ev.Finished)]
    if not ends or ends[-1].reason != "completed":
        return None
    accuracies = [e.test_accuracy for e in events if isinstance(e, ev.EpochEnd)]
    return max(accuracies) if accuracies else None


def plan_seeds(plan: SweepPlan, seeds: int, top: int) -> list[Seeded]:
    """The ``top`` best completed trials, each with its run as seed 0 and seeds 1..``seeds``-1."""
    done = [t for t in counted(open_study(plan).get_trials(deepcopy=False)) if t.state.name == "COMPLETE"]
    chosen = []
    for t in best_first(done)[:top]:
        runs = {0: Path(t.user_attrs["run_dir"])}
        runs.update({s: Path(f"{runs[0]}-s{s}") for s in range(1, seeds)})
        chosen.append(Seeded(t.number, dict(t.params), runs))
    return chosen


class SeedRuns:
    """Runs the seeds that have not completed, ``plan.parallel`` at a time; a stop signal stops
    them (they save) and ends the rest."""

    def __init__(self, plan: SweepPlan, say: Any = print) -> None:
        self.plan, self.say = plan, say
        self.slots = Slots(plan.parallel, plan.base)
        self.stopping = threading.Event()
        self.running: set[RunProcess] = set()
        self.lock = threading.Lock()

    def run(self, chosen: list[Seeded]) -> int:
        todo = [(t, s) for t in chosen for s, run in t.runs.items() if s and completed_best(run) is None]
        if todo:
            self.say(f"sweep {self.plan.name}: {len(todo)} seed runs of the best {len(chosen)} trials to train, "
                     f"{self.plan.parallel} at a time")  # fmt: skip
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            with concurrent.futures.ThreadPoolExecutor(self.plan.parallel) as pool:
                for line in pool.map(self._one, todo):
                    if line:
                        self.say(line)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        write_seeds(self.plan, chosen)
        return 130 if self.stopping.is_set() else 0

    def _one(self, job: tuple[Seeded, int]) -> str:
        trial, seed = job
        run = trial.runs[seed]
        args = [*trial_argv(self.plan.base, trial.values), "--seed", str(seed),
                "--run-dir", str(run), "--name", run.name, "--overwrite"]  # fmt: skip
        with self.slots.taken() as slot:  # (a free GPU: a place is given back when its run ends)
            with self.lock:
                if self.stopping.is_set():
                    return ""
                proc = start_run(args, self.plan.folder / f"{run.name}.log", self.slots.env(slot))
                self.running.add(proc)
            code = proc.wait()
            with self.lock:
                self.running.discard(proc)
        best = completed_best(run)
        if best is not None:
            return f"trial {trial.number} seed {seed}: best {best:.1%} | run {run.name}"
        return f"trial {trial.number} seed {seed}: did not complete (exit {code}; its log: {run.name}.log)"

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()
        with self.lock:
            for proc in self.running:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)


def write_seeds(plan: SweepPlan, chosen: list[Seeded]) -> None:
    atomic_write_json(plan.folder / SEEDS_FILE, {"trials": [
        {"number": t.number, "values": t.values, "runs": {str(s): str(r) for s, r in t.runs.items()},
         "results": {str(s): a for s, a in t.results().items()}} for t in chosen]})  # fmt: skip


@dataclass(frozen=True)
class SeedSummary:
    number: int
    mean: float
    sd: float
    count: int


def summaries(chosen: list[Seeded]) -> list[SeedSummary]:
    """Each trial's mean and spread (sample standard deviation) over its finished seeds, best first."""
    found = []
    for t in chosen:
        results = list(t.results().values())
        if results:
            sd = statistics.stdev(results) if len(results) > 1 else 0.0
            found.append(SeedSummary(t.number, statistics.fmean(results), sd, len(results)))
    return sorted(found, key=lambda row: -row.mean)


def seeds_table(chosen: list[Seeded], seeds: int) -> list[str]:
    """A line per trial, best mean first, then the verdict."""
    rows = summaries(chosen)
    values = {t.number: t.values for t in chosen}
    lines = []
    for row in rows:
        shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values[row.number].items())
        lines.append(f"  trial {row.number}: {row.mean:.2%} ± {row.sd:.2%} over {row.count} of {seeds} seeds | {shown}")
    lines.append(verdict(rows))
    return lines


def verdict(rows: list[SeedSummary]) -> str:
    """Whether the best trial beats the next: a gap smaller than the larger spread is noise."""
    if len(rows) < 2:
        return "verdict: one trial has seed results; nothing to compare"
    first, second = rows[0], rows[1]
    if first.count < 2 or second.count < 2:
        return "verdict: too few seeds finished to measure the spread"
    gap, spread = first.mean - second.mean, max(first.sd, second.sd)
    if gap < spread:
        return (f"verdict: noise: trial {first.number} leads trial {second.number} by {gap * 100:.2f} points, "
                f"less than their spread ({spread * 100:.2f})")  # fmt: skip
    return (f"verdict: trial {first.number} is better than trial {second.number} by {gap * 100:.2f} points, "
            f"more than their spread ({spread * 100:.2f})")  # fmt: skip
