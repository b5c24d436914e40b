"""Plain lines for a run's events: what headless training prints and what a detached
trainer writes to its output.log. Torch-free."""

from __future__ import annotations

import sys
from typing import TextIO

from engine.run import events as ev
from engine.run.events import Phase
from engine.run.wording import event_lines, model_phrase, per_class_rows, percent, plural

QUIET_PHASES = (Phase.TRAINING, Phase.EVALUATING, Phase.SAVING, Phase.WAITING_FOR_ROOM, Phase.PAUSED, Phase.FAILED)
"""Phases the headless lines do not announce: progress, evaluation and checkpoint lines say more."""


class LinePrinter:
    """Event sink printing one plain line per meaningful event: reads well in a log file."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out  # None: sys.stdout as it is at each line (it may be replaced after this)
        self.last_status = ""
        self.last_evaluation: ev.Evaluation | None = None

    def line(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.Status):
            if e.message and e.state not in QUIET_PHASES and e.message != self.last_status:
                self.line(f"[{e.state}] {e.message}")
                self.last_status = e.message
        elif isinstance(e, ev.RunStarted):
            c = e.config
            self.line(
                f"recipe {c['recipe']} | {model_phrase(c)} | batch {c['batch_size']} "
                f"| {c['optimizer']} lr {c['lr']:g} momentum {c['momentum']:g} | {plural(int(c['epochs']), 'epoch')}"
            )
            cuda = f", CUDA {e.cuda_version}" if e.cuda_version and e.device.startswith("cuda") else ""
            ranks = f" | {e.world_size} processes (data-parallel)" if e.world_size > 1 else ""
            self.line(f"device {e.device} ({e.device_name}) | torch {e.torch_version}{cuda} | {plural(e.num_threads, 'torch thread')}"
                      f"{ranks}")  # fmt: skip
            self.line(
                f"data {e.data_source}: {e.train_size} train, {e.test_size} test, {len(e.class_names)} classes "
                f"| loader {e.loader} | {e.steps_per_epoch} steps/epoch"
            )
        elif isinstance(e, ev.LrFound):  # the range test's table, then (below) its suggestion
            self.line("lr-find:   step  learning rate  loss     smoothed")
            for i, (lr, loss) in enumerate(zip(e.lrs, e.losses, strict=True)):
                smoothed = f"{e.smoothed[i]:.4f}" if i < len(e.smoothed) else "--"
                self.line(f"lr-find: {i + 1:6d}  {lr:13.3e}  {loss:<7.4f}  {smoothed}")
        elif isinstance(e, ev.Progress) and e.interval_loss is not None:
            self.line(f"[{e.epoch + 1}, {e.step:5d}] loss: {e.interval_loss:.3f}")  # the tutorial's own format
        if not isinstance(e, ev.Failed):  # the caller prints a failure's one line
            for level, text in event_lines(e):
                self.line(text if level == "info" else f"[{level}] {text}")
        if isinstance(e, ev.Evaluation):
            self.last_evaluation = e
        elif isinstance(e, ev.Finished) and e.reason == "completed" and self.last_evaluation is not None:
            self.line("per-class test accuracy:")
            for row in per_class_lines(self.last_evaluation):
                self.line(row)


def per_class_lines(evaluation: ev.Evaluation) -> list[str]:
    width = max(len(n) for n in evaluation.class_names)
    return [f"  {name:<{width}}  {percent(acc):>7}  {mark}".rstrip() for name, acc, mark in per_class_rows(evaluation)]
