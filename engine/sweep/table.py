"""A sweep's trials as a table: one line each for the terminal, rows for CSV (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.run.export import csv_bytes
from engine.run.fileio import atomic_write
from engine.sweep.plan import SweepPlan
from engine.sweep.storage import open_study
from engine.sweep.trials import counted

CSV_HEADER = ["trial", "state", "best_accuracy", "epochs", "seconds", "cause", "run"]


def state_of(trial: Any) -> str:
    """completed, pruned, failed, running, waiting; interrupted for one a stop cut short."""
    if trial.user_attrs.get("interrupted"):
        return "interrupted"
    return str(trial.state.name.lower()).replace("complete", "completed").replace("fail", "failed")


def best_first(trials: list[Any]) -> list[Any]:
    def rank(trial: Any) -> tuple[float, int]:
        best = trial.user_attrs.get("best_accuracy")
        return (-best if best is not None else 1.0, trial.number)

    return sorted(trials, key=rank)


def seconds_of(trial: Any) -> float:
    end, start = trial.datetime_complete, trial.datetime_start
    return (end - start).total_seconds() if end and start else 0.0


def trial_line(trial: Any) -> str:
    """``trial 3 pruned after 2 epochs: best 41.2% | lr 0.12, cutout 8 | 12 s | run demo-t003``."""
    state = state_of(trial)
    best = trial.user_attrs.get("best_accuracy")
    params = ", ".join(f"{k} {_short(v)}" for k, v in trial.params.items())
    seconds = seconds_of(trial)
    epochs = trial.user_attrs.get("epochs", 0)
    result = f"best {best:.1%}" if best is not None else "no result"
    cause = f" ({trial.user_attrs['cause']})" if trial.user_attrs.get("cause") else ""
    run = Path(trial.user_attrs.get("run_dir", "?")).name
    return (
        f"trial {trial.number} {state} after {epochs} epochs: {result}{cause} | {params} | {seconds:.0f} s | run {run}"
    )


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_trials_csv(plan: SweepPlan, path: Path) -> Path:
    """The trials table, best first, one column per swept option, written atomically."""
    trials = best_first(counted(open_study(plan).get_trials(deepcopy=False)))
    names = [p.name for p in plan.params]
    rows = [[t.number, state_of(t), t.user_attrs.get("best_accuracy", ""), t.user_attrs.get("epochs", 0),
             round(seconds_of(t), 1), t.user_attrs.get("cause", ""), Path(t.user_attrs.get("run_dir", "")).name,
             *(t.params.get(n, "") for n in names)] for t in trials]  # fmt: skip
    data = csv_bytes(CSV_HEADER + names, rows)
    atomic_write(path, lambda f: f.write(data))
    return path


def best_run(plan: SweepPlan) -> Path | None:
    """The run folder of the best completed trial, if any."""
    done = [t for t in counted(open_study(plan).get_trials(deepcopy=False)) if t.state.name == "COMPLETE"]
    return Path(best_first(done)[0].user_attrs["run_dir"]) if done else None
