"""Runs as seen from their directories: state, summary, CSV export. No torch needed.

A run's state comes from its last events and whether its trainer process still lives:
running, paused, finished, failed, stopped (stopped on request, or its process died
without a final report: kill -9, reboot — resumable from checkpoints/last.pt).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import events as ev
from engine.control import trainer_alive
from engine.fileio import atomic_write
from engine.rundir import EVENTS, read_events


@dataclass
class RunSummary:
    name: str
    path: str
    state: str
    recipe: str
    data: str
    epochs_done: int
    epochs: int
    best_accuracy: float | None
    started: float | None
    duration: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(run_dir: Path) -> RunSummary | None:
    """None when the folder holds no run (no events.jsonl with a run_started)."""
    events = read_events(run_dir)
    started = next((e for e in events if isinstance(e, ev.RunStarted)), None)
    if started is None:
        events_file = run_dir / EVENTS
        return damaged(run_dir) if events_file.is_file() and events_file.stat().st_size else None
    epochs = [e for e in events if isinstance(e, ev.EpochEnd)]
    final = next((e for e in reversed(events) if isinstance(e, ev.Finished | ev.Failed)), None)
    last_resume = next((e for e in reversed(events) if isinstance(e, ev.RunStarted)), started)
    if isinstance(final, ev.Failed) and final.t >= last_resume.t:
        state = "failed"
    elif isinstance(final, ev.Finished) and final.t >= last_resume.t:
        state = "finished" if final.reason == "completed" else "stopped"
    elif trainer_alive(run_dir):
        pauses = [e for e in events if isinstance(e, ev.Paused | ev.Resumed)]
        state = "paused" if pauses and isinstance(pauses[-1], ev.Paused) else "running"
    else:
        state = "stopped"  # the process died without a final report
    # Every accuracy the run measured: epoch ends, evaluate-now, and what a stopped run reported.
    accuracies = [e.test_accuracy for e in epochs] + [e.accuracy for e in events if isinstance(e, ev.Evaluation)]
    accuracies += [
        a for e in events if isinstance(e, ev.Finished) for a in (e.best_accuracy, e.test_accuracy) if a is not None
    ]
    return RunSummary(
        name=run_dir.name,
        path=str(run_dir),
        state=state,
        recipe=str(started.config.get("recipe", "?")),
        data=str(started.config.get("data", "?")),
        epochs_done=epochs[-1].epoch if epochs else last_resume.start_epoch,
        epochs=int(last_resume.config.get("epochs", 0)),
        best_accuracy=max(accuracies) if accuracies else None,
        started=started.t,
        duration=(events[-1].t - started.t) if events else None,
    )


def damaged(run_dir: Path) -> RunSummary:
    """A run whose files cannot be read: listed as such, never hiding the others."""
    return RunSummary(run_dir.name, str(run_dir), "damaged", "?", "?", 0, 0, None, None, None)


def safe_summary(run_dir: Path) -> RunSummary | None:
    try:
        return summarize(run_dir)
    except Exception:  # one unreadable run (permissions, garbage, a file system error) hides nothing else
        return damaged(run_dir)


def list_runs(root: Path) -> list[RunSummary]:
    """Runs under ``root``, oldest first; unreadable ones as ``damaged``."""
    try:
        folders = [p for p in sorted(root.iterdir()) if (p / EVENTS).is_file()] if root.is_dir() else []
    except OSError:
        return []
    runs = [safe_summary(p) for p in folders]
    return sorted((r for r in runs if r is not None), key=lambda r: (r.started or 0.0, r.name))


def latest_run(root: Path) -> Path | None:
    try:
        candidates = [p for p in root.iterdir() if (p / EVENTS).is_file()] if root.is_dir() else []
        return max(candidates, key=lambda p: (p / EVENTS).stat().st_mtime, default=None)
    except OSError:
        return None


def _csv_bytes(header: list[str], rows: Sequence[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogateescape")


def export_csv(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write steps.csv and epochs.csv (atomically) for plotting elsewhere; returns their paths."""
    events = read_events(run_dir)
    steps = [[e.global_step, e.epoch + 1, e.step, e.loss, e.lr, e.images_per_sec, e.data_wait, e.elapsed]
             for e in events if isinstance(e, ev.Progress)]  # fmt: skip
    epochs = [[e.epoch, e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy, e.images_per_sec, e.seconds,
               e.eval_seconds, e.lr] for e in events if isinstance(e, ev.EpochEnd)]  # fmt: skip
    files = {
        out_dir / "steps.csv": _csv_bytes(
            ["global_step", "epoch", "step", "loss", "lr", "images_per_sec", "data_wait", "elapsed_s"], steps
        ),
        out_dir / "epochs.csv": _csv_bytes(
            [
                "epoch",
                "train_loss",
                "train_accuracy",
                "test_loss",
                "test_accuracy",
                "images_per_sec",
                "seconds",
                "eval_seconds",
                "lr",
            ],
            epochs,
        ),
    }
    for path, data in files.items():
        atomic_write(path, lambda f, data=data: f.write(data))  # type: ignore[misc]
    return list(files)


def runs_json(runs: list[RunSummary]) -> str:
    return json.dumps([r.to_dict() for r in runs], indent=2)


def accuracy_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(epochs, test accuracy %) of a run, for overlaying runs."""
    epochs = [e for e in read_events(run_dir) if isinstance(e, ev.EpochEnd)]
    return [float(e.epoch) for e in epochs], [100 * e.test_accuracy for e in epochs]
