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
from engine.run.errors import EXIT_CRASH, EXIT_STOPPED, EXIT_USAGE, UserError, exit_code, rank_exit_code
from engine.run.heavy_imports import heavy_imports
from engine.run.lines import LinePrinter


def tolerant_output() -> None:
    """Printing never fails and never ends a run: not on a file name that is not valid UTF-8,
    nor on a closed pipe or a full disk (engine/run/console.py)."""
    console.install()


class _StoppedInSetup(BaseException):
    """Raised from the signal handler to leave a download or decode that has nothing to save."""


def run_headless(cfg: TrainConfig, out: TextIO | None = None) -> int:
    """Train in this process, printing plain lines. Returns the exit code.

    Ctrl-C, SIGTERM and SIGHUP stop at the next batch boundary after saving a
    checkpoint; a second signal aborts at once.
    """
    with heavy_imports():
        from engine.train.trainer import Trainer

    controls = Controls()
    printer = LinePrinter(out)
    signals: list[int] = []

    failures: list[ev.Failed] = []

    def sink(e: ev.Event) -> None:
        printer(e)
        if isinstance(e, ev.Failed):
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
        return _as_rank(128 + signals[0], ended=False)
    except UserError as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cifar-tui: interrupted", file=sys.stderr, flush=True)
        return _as_rank(EXIT_STOPPED, ended=False)
    except Exception as exc:  # the traceback is in events.jsonl; keep the terminal readable
        why = failures[-1].message if failures else f"{type(exc).__name__}: {exc}"
        print(f"cifar-tui: training failed: {why}", file=sys.stderr, flush=True)
        return EXIT_CRASH
    finally:
        forget_output()
    return _as_rank(exit_code(finished, signal=signals[0] if signals else 0), ended=True)


def _as_rank(code: int, *, ended: bool) -> int:
    """The command's exit code; as one rank of a launch, what torchrun is told (rank_exit_code)."""
    return rank_exit_code(code, ended=ended) if launched() else code
