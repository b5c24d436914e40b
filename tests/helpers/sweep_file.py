"""A sweep's screen file (RUNS/NAME.sweep/trials.json) as a sweep writes it, for the screen's
tests: five trials in every state, two swept values (a log range and a choice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

T0 = 1_780_000_000.0  # a fixed start: the plots' time axis is the same in every snapshot


def trial(number: int, state: str, lr: float, cutout: str, curve: list[float], runs: Path, *,
          started: float, ended: float | None, cause: str = "") -> dict[str, Any]:  # fmt: skip
    return {"number": number, "state": state, "params": {"lr": lr, "cutout": cutout},
            "best": max(curve) if curve else None, "latest": curve[-1] if curve else None, "curve": curve,
            "epochs": len(curve), "seconds": (ended or started + 30) - started, "started": started, "ended": ended,
            "device": f"GPU {number % 2}", "run_dir": str(runs / f"demo-t{number:03d}"), "cause": cause}  # fmt: skip


def write_sweep_file(runs: Path, *, live: bool = False, pid: int | None = None) -> Path:
    """RUNS/demo.sweep/trials.json with five trials, best first as the sweep writes them."""
    folder = runs / "demo.sweep"
    folder.mkdir(parents=True, exist_ok=True)
    trials = [
        trial(2, "completed", 0.12, "8", [0.41, 0.58, 0.66], runs, started=T0 + 60, ended=T0 + 240),
        trial(0, "completed", 0.05, "0", [0.38, 0.52, 0.61], runs, started=T0, ended=T0 + 180),
        trial(4, "running", 0.31, "12", [0.44, 0.55], runs, started=T0 + 200, ended=None),
        trial(1, "pruned", 0.7, "0", [0.21], runs, started=T0, ended=T0 + 70),
        trial(3, "failed", 0.9, "12", [], runs, started=T0 + 190, ended=T0 + 195, cause="loss became nan"),
    ]
    data = {"name": "demo", "trials_asked": 8, "sampler": "tpe", "pruner": "asha", "parallel": 2,
            "space": [{"name": "lr", "kind": "log", "low": 0.01, "high": 1.0, "choices": []},
                      {"name": "cutout", "kind": "choice", "low": 0.0, "high": 0.0, "choices": ["0", "8", "12"]}],
            "trials": trials, "importances": {"lr": 0.81, "cutout": 0.19}, "live": live, "pid": pid,
            "written": T0 + 250}  # fmt: skip
    (folder / "trials.json").write_text(json.dumps(data))
    # --seeds: the best trial again with two more seeds (its own run first)
    seeds = {"trials": [{"number": 2, "values": {"lr": 0.12, "cutout": "8"}, "runs": {},
                         "results": {"0": 0.66, "1": 0.62, "2": 0.64}}]}  # fmt: skip
    (folder / "seeds.json").write_text(json.dumps(seeds))
    (folder / "sweep.json").write_text("{}")
    return folder
