"""What the sweep screen shows, as one JSON file: RUNS/<name>.sweep/trials.json, rewritten by the
sweep while it runs (every few seconds and at each trial's end) and by ``--status``.

The screen reads this file and never the study: it needs no Optuna and no database driver, an
attached screen and the browser view read the same file, and a finished sweep's screen still
opens. Trials other boxes run on a shared study are in it too: the sweep reads the storage.
Torch-free."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from engine.run.control_socket import process_start_time
from engine.run.fileio import atomic_write_json
from engine.sweep.plan import SNAPSHOT, SweepPlan
from engine.sweep.table import best_first, seconds_of, state_of
from engine.sweep.trials import counted


def trial_row(trial: Any) -> dict[str, Any]:
    """One trial as the screen shows it: state, values, best and latest accuracy, epochs, time."""
    reported = [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
    best = trial.user_attrs.get("best_accuracy", max(reported) if reported else None)
    return {
        "number": trial.number,
        "state": state_of(trial),
        "params": dict(trial.params),
        "best": best,
        "latest": reported[-1] if reported else None,
        "curve": reported,
        "epochs": trial.user_attrs.get("epochs", len(reported)),
        "seconds": round(seconds_of(trial) or _running_for(trial), 1),
        "started": trial.datetime_start.timestamp() if trial.datetime_start else None,
        "ended": trial.datetime_complete.timestamp() if trial.datetime_complete else None,
        "device": trial.user_attrs.get("device", ""),
        "run_dir": trial.user_attrs.get("run_dir", ""),
        "cause": trial.user_attrs.get("cause", ""),
    }


def _running_for(trial: Any) -> float:
    start = trial.datetime_start
    return max(0.0, time.time() - start.timestamp()) if start and not trial.datetime_complete else 0.0


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances over the completed trials (PED-ANOVA: no scikit-learn);
    empty while there are too few of them to say."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    key = (study.study_name, tuple(t.number for t in done))
    if key in _IMPORTANCES:  # (the file is rewritten every 2 s; the answer changes as trials complete)
        return _IMPORTANCES[key]
    found: dict[str, float] = {}
    if len(done) >= 3:
        with contextlib.suppress(ValueError, RuntimeError, ZeroDivisionError):  # e.g. all trials alike
            found = {name: round(float(value), 4) for name, value in
                     optuna.importance.get_param_importances(study, evaluator=PedAnovaImportanceEvaluator()).items()}  # fmt: skip
    _IMPORTANCES.clear()
    _IMPORTANCES[key] = found
    return found


_IMPORTANCES: dict[tuple[str, tuple[int, ...]], dict[str, float]] = {}


def snapshot(plan: SweepPlan, study: Any, *, live: bool) -> dict[str, Any]:
    """The sweep as the screen draws it; ``live`` while a sweep of this box runs it."""
    every = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in every}
    # A trial a stop interrupted stays on screen until its retry starts (the same command again).
    waiting = [t for t in every if t.user_attrs.get("interrupted") and t.params and t.number not in retried]
    trials = best_first(counted(every) + waiting)
    return {
        "name": plan.name,
        "trials_asked": plan.trials,
        "sampler": plan.sampler,
        "pruner": plan.pruner,
        "parallel": plan.parallel,
        "space": [
            {"name": p.name, "kind": p.kind, "low": p.low, "high": p.high, "choices": list(p.choices)}
            for p in plan.params
        ],
        "trials": [trial_row(t) for t in trials],
        "importances": importances(study),
        "live": live,
        "pid": os.getpid() if live else None,
        "pid_started": process_start_time() if live else None,
        "written": time.time(),
    }


def write_snapshot(plan: SweepPlan, study: Any, *, live: bool) -> Path:
    path = plan.folder / SNAPSHOT
    atomic_write_json(path, snapshot(plan, study, live=live))
    return path
