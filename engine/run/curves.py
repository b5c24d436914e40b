"""A run's curves for comparing runs: train loss per report, and train/test loss and accuracy per
epoch, each against step, epoch and training time. Read from events.jsonl; torch-free.

Time is training time (pauses and requested evaluations left out, as the dashboard's elapsed),
carried across resumes so a resumed run's curve goes on instead of starting again at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.run import events as ev
from engine.run.rundir import read_events
from engine.run.steering import EPOCHS, LR_SCALE

AXES = ("epoch", "step", "time")
METRICS = ("accuracy", "loss")


@dataclass
class Point:
    step: float
    epoch: float
    time: float  # seconds of training

    def x(self, axis: str) -> float:
        return self.time / 60 if axis == "time" else self.step if axis == "step" else self.epoch


@dataclass
class RunCurves:
    train_loss: list[tuple[Point, float]] = field(default_factory=list)
    test_loss: list[tuple[Point, float]] = field(default_factory=list)
    test_accuracy: list[tuple[Point, float]] = field(default_factory=list)  # percent
    train_accuracy: list[tuple[Point, float]] = field(default_factory=list)  # percent
    steered: list[Point] = field(default_factory=list)
    """Where the run's LR multiplier or length was steered (refused acts left out)."""

    def series(self, metric: str) -> dict[str, list[tuple[Point, float]]]:
        """The curves one plot of ``metric`` draws, by legend word."""
        if metric == "loss":
            return {"train": self.train_loss, "test": self.test_loss}
        return {"test": self.test_accuracy, "train": self.train_accuracy}


def axis_label(axis: str) -> str:
    return {"step": "step", "epoch": "epoch", "time": "training time (min)"}[axis]


def read_curves(run_dir: Path) -> RunCurves:
    """The run's curves; empty ones for a run without events."""
    curves = RunCurves()
    steps_per_epoch = 1
    carried = 0.0  # training time of earlier sessions (a resume restarts the elapsed clock)
    last_elapsed = 0.0
    for e in read_events(run_dir):
        if isinstance(e, ev.RunStarted):
            steps_per_epoch = max(1, e.steps_per_epoch)
            carried += last_elapsed
            last_elapsed = 0.0
        elif isinstance(e, ev.Progress):
            last_elapsed = e.elapsed
            point = Point(e.global_step, e.global_step / steps_per_epoch, carried + e.elapsed)
            curves.train_loss.append((point, e.loss))
        elif isinstance(e, ev.EpochEnd):
            step = float(e.epoch * steps_per_epoch)
            point = Point(step, float(e.epoch), carried + last_elapsed)
            curves.test_loss.append((point, e.test_loss))
            curves.test_accuracy.append((point, 100 * e.test_accuracy))
            curves.train_accuracy.append((point, 100 * e.train_accuracy))
        elif isinstance(e, ev.Steered) and not e.refused and e.what in (LR_SCALE, EPOCHS):
            curves.steered.append(Point(e.global_step, e.global_step / steps_per_epoch, carried + last_elapsed))
    return curves
