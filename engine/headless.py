"""The headless runner: training in this process, one plain line per meaningful event.

Importing this module does not import torch; only running training does.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import TextIO

from engine.ranks.plan import launched
from engine.run import console, stop_signals
from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import Controls
from engine.run.errors import EXIT_CRASH, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, UserError, exit_code
from engine.run.events import Phase
from engine.run.wording import event_lines, model_phrase, per_class_rows, percent, plural


def tolerant_output() -> None:
    """Printing never fails and never ends a run: not on a file name that is not valid UTF-8,
    nor on a closed pipe or a full disk (engine/run/console.py)."""
    console.install()


QUIET_PHASES = (Phase.TRAINING, Phase.EVALUATING, Phase.SAVING, Phase.WAITING_FOR_ROOM, Phase.FAILED)
"""Phases the headless lines do not announce: progress, evaluation and checkpoint lines say more."""


class LinePrinter:
    """Event sink printing one plain line per meaningful event: reads well in a log file."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.last_status = ""

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

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
            self.line(f"device {e.device} ({e.device_name}) | torch {e.torch_version}{cuda} | {e.num_threads} threads"
                      f"{ranks}")  # fmt: skip
            self.line(
                f"data {e.data_source}: {e.train_size} train, {e.test_size} test, {len(e.class_names)} classes "
                f"| loader {e.loader} | {e.steps_per_epoch} steps/epoch"
            )
        elif isinstance(e, ev.Progress) and e.interval_loss is not None:
            self.line(f"[{e.epoch + 1}, {e.step:5d}] loss: {e.interval_loss:.3f}")  # the seed's own format
        if not isinstance(e, ev.Failed):  # the caller prints a failure's one line
            for level, text in event_lines(e):
                self.line(text if level == "info" else f"[{level}] {text}")


def per_class_lines(evaluation: ev.Evaluation) -> list[str]:
    width = max(len(n) for n in evaluation.class_names)
    return [f"  {name:<{width}}  {percent(acc):>7}  {mark}".rstrip() for name, acc, mark in per_class_rows(evaluation)]


class _StoppedInSetup(BaseException):
    """Raised from the signal handler to leave a download or decode that has nothing to save."""


def run_headless(cfg: TrainConfig, out: TextIO | None = None) -> int:
    """Train in this process, printing plain lines. Returns the exit code.

    Ctrl-C, SIGTERM and SIGHUP stop at the next batch boundary after saving a
    checkpoint; a second signal aborts at once.
    """
    from engine.train.trainer import Trainer

    controls = Controls()
    printer = LinePrinter(out)
    final: list[ev.Evaluation] = []
    signals: list[int] = []

    failures: list[ev.Failed] = []

    def sink(e: ev.Event) -> None:
        printer(e)
        if isinstance(e, ev.Evaluation):
            final[:] = [e]
        elif isinstance(e, ev.Failed):
            failures.append(e)

    trainer = Trainer(cfg, sink, controls)

    owner = os.getpid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            return  # a DataLoader worker that inherited the handler: its parent speaks for it
        name = signal.Signals(signum).name
        if controls.waiting_for_room:  # the run waits for disk room to save its end: a signal gives that up
            if not signals:  # (its exit code: 1, the run's end lost)
                signals.append(signum)
            controls.stop(save=True, cause=name)
            printer.line(f"[signal] {name}: giving up the final checkpoint")
            return
        if signals:
            raise KeyboardInterrupt
        signals.append(signum)
        controls.stop(save=True, cause=name)
        if trainer.end_if_not_started(name):
            raise _StoppedInSetup  # downloading or decoding: nothing to save, leave now
        printer.line(f"[signal] {name}: saving a checkpoint and stopping at the next batch")

    forget_output = console.on_failure(
        lambda name, why: trainer.emit(ev.Log(console.failure_note(name, why), level="warning"))
    )
    try:
        with stop_signals.handled(on_signal):
            finished = trainer.run()
    except _StoppedInSetup:
        return 128 + signals[0]
    except UserError as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cifar-tui: interrupted", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except Exception as exc:  # the traceback is in events.jsonl; keep the terminal readable
        why = failures[-1].message if failures else f"{type(exc).__name__}: {exc}"
        print(f"cifar-tui: training failed: {why}", file=sys.stderr, flush=True)
        return EXIT_CRASH
    finally:
        forget_output()
    if final and finished.reason == "completed":
        printer.line("per-class test accuracy:")
        for row in per_class_lines(final[0]):
            printer.line(row)
    if launched():  # the run ended as planned (its end saved or not): the launcher reports how, from
        return EXIT_OK  # the run's last event; a rank's failure here would make torchrun restart the group
    return exit_code(finished, signal=signals[0] if signals else 0)
