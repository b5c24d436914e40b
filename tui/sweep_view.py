"""A sweep as the sweep screen reads it: RUNS/<name>.sweep/trials.json (engine/sweep/snapshot.py),
with the few sums the screen draws (best so far against time, accuracy against a parameter).
Neither Optuna nor torch: the file is all it needs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.run.control_socket import same_process
from engine.sweep.plan import SEEDS_FILE, SNAPSHOT


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    params: dict[str, Any]
    best: float | None
    latest: float | None
    epochs: int
    seconds: float
    started: float | None
    ended: float | None
    device: str
    run_dir: str
    cause: str
    curve: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRow:
        return cls(
            int(d["number"]), str(d["state"]), dict(d.get("params") or {}), _num(d.get("best")),
            _num(d.get("latest")), int(d.get("epochs") or 0), float(d.get("seconds") or 0.0), _num(d.get("started")),
            _num(d.get("ended")), str(d.get("device") or ""), str(d.get("run_dir") or ""), str(d.get("cause") or ""),
            [float(v) for v in d.get("curve") or []],
        )  # fmt: skip


@dataclass(frozen=True)
class SweepView:
    name: str
    trials_asked: int
    sampler: str
    pruner: str
    space: list[dict[str, Any]]
    trials: list[TrialRow]
    importances: dict[str, float]
    live: bool
    pid: int | None
    pid_started: float | None = None
    seeds: dict[int, list[float]] = field(default_factory=dict)
    """Trial number -> best accuracy of each seed that completed (``--seeds``: seeds.json)."""

    @property
    def param_names(self) -> list[str]:
        return [str(p["name"]) for p in self.space]

    def is_log(self, name: str) -> bool:
        return any(p["name"] == name and p["kind"] == "log" for p in self.space)

    def is_choice(self, name: str) -> bool:
        return any(p["name"] == name and p["kind"] == "choice" for p in self.space)

    def choices(self, name: str) -> list[str]:
        """A choice's values in the order the space gives them."""
        return next((list(map(str, p.get("choices") or [])) for p in self.space if p["name"] == name), [])

    def running(self) -> bool:
        """Whether a sweep on this box still runs it (the file says so and its process lives on,
        the same process: a pid can be reused)."""
        return self.live and self.pid is not None and same_process(self.pid, self.pid_started)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for t in self.trials:
            found[t.state] = found.get(t.state, 0) + 1
        return found

    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.state == "completed" and t.best is not None]
        return max(done, key=lambda t: t.best or 0.0) if done else None


def read_sweep(folder: Path) -> SweepView | None:
    """The sweep screen's file, or None while there is none (or it cannot be read)."""
    try:
        d = json.loads((folder / SNAPSHOT).read_text())
        return SweepView(
            str(d["name"]), int(d["trials_asked"]), str(d.get("sampler", "")), str(d.get("pruner", "")),
            list(d.get("space") or []), [TrialRow.from_dict(t) for t in d.get("trials") or []],
            {str(k): float(v) for k, v in (d.get("importances") or {}).items()}, bool(d.get("live")),
            int(d["pid"]) if d.get("pid") else None, _num(d.get("pid_started")), read_seeds(folder),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_seeds(folder: Path) -> dict[int, list[float]]:
    """What ``--seeds`` left in seeds.json: each re-run trial's accuracy per completed seed."""
    try:
        trials = json.loads((folder / SEEDS_FILE).read_text())["trials"]
        return {int(t["number"]): [float(v) for v in t["results"].values()] for t in trials}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def best_so_far(trials: list[TrialRow]) -> list[tuple[float, float]]:
    """(minutes since the sweep's first trial started, best accuracy of the trials ended by then):
    a step up at each trial that beat the ones before it."""
    ended = sorted((t for t in trials if t.ended is not None and t.best is not None), key=lambda t: t.ended or 0.0)
    starts = [t.started for t in trials if t.started is not None]
    if not ended or not starts:
        return []
    origin, best, points = min(starts), -math.inf, []
    for t in ended:
        best = max(best, t.best or 0.0)
        points.append(((t.ended or origin) / 60 - origin / 60, best * 100))
    return points


def by_param(trials: list[TrialRow], name: str) -> dict[str, list[tuple[Any, float]]]:
    """Each state's (value of ``name``, best accuracy %) points: completed and pruned trials."""
    points: dict[str, list[tuple[Any, float]]] = {}
    for t in trials:
        if t.best is not None and name in t.params and t.state in ("completed", "pruned", "running"):
            points.setdefault(t.state, []).append((t.params[name], t.best * 100))
    return points


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
