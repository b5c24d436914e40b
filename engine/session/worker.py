"""``python -m engine.session.worker FD``: the training child process, the trainer's side of
engine/session/child.py: it reads its config, trains, streams events and applies commands."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.run import console, wire
from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import COMMANDS, STOPPED_FROM_A_DASHBOARD, Command, Controls, cause_in, command_in
from engine.run.heavy_imports import heavy_imports
from engine.run.lines import LinePrinter
from engine.session.child import DETACH


class EventChannel:
    """Sends events to the app from its own thread, so training never waits on the dashboard.

    A stalled app (SIGSTOP, Ctrl-S, a congested SSH link) stops reading; the kernel's socket
    buffers fill and ``conn.send`` would block. Here it blocks only this thread: events queue
    in memory (every one is in events.jsonl already) and are delivered when the app reads
    again. Past ``max_pending`` queued events, progress events are dropped first (counted,
    and said once delivery resumes), so a stall of days cannot exhaust memory.
    """

    def __init__(self, conn: Connection, on_gone: Callable[[], None], max_pending: int = 200_000) -> None:
        self._conn = conn
        self._on_gone = on_gone
        self._max = max_pending
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._sending = False
        self.dropped = 0
        self.gone = False
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self._thread.start()

    def put(self, message: dict[str, Any]) -> None:
        """Queue a message; never blocks."""
        with self._cond:
            if self.gone or self._closed:
                return
            if len(self._queue) >= self._max and message.get("kind") == "progress":
                self.dropped += 1
                return
            self._queue.append(message)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                message = self._queue.popleft()
                dropped, self.dropped = self.dropped, 0
                self._sending = True
            try:
                if dropped:
                    self._conn.send(wire.to_dict(ev.Log(f"the dashboard fell behind: {dropped} progress events not "
                                                      "shown (all are in events.jsonl)", level="warning")))  # fmt: skip
                self._conn.send(message)
            except (OSError, EOFError, ValueError):
                with self._cond:
                    self.gone = True
                    self._queue.clear()
                    self._sending = False
                    self._cond.notify_all()
                self._on_gone()
                return
            with self._cond:
                self._sending = False
                self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Deliver what is queued (up to ``timeout`` s, the app may be stopped), then stop; True if all went."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            delivered = self._cond.wait_for(lambda: not self._queue and not self._sending, timeout)
            self._queue.clear()
            return delivered and not self.gone


def train_for_dashboard(conn: Connection) -> int:
    """Child side: read the config, train, stream events; apply commands as they come.

    ``{"command": "detach"}`` cuts the child loose: its output goes to the run directory's
    output.log, events only to events.jsonl, and the channel closing no longer stops it.
    A stop before training began (downloading, decoding) ends the child at once: there is
    nothing to save and nothing on disk yet.
    """
    from engine.run.errors import UserError

    with heavy_imports():
        from engine.train.trainer import Trainer

    controls = Controls()
    told_to_stop = threading.Event()
    detached = threading.Event()
    detach_wanted = threading.Event()
    run_dir: list[Path] = []

    def dashboard_gone() -> None:
        """The app's end closed (it quit or died): keep the work, then stop; unless detached."""
        if not detached.is_set() and not detach_wanted.is_set():
            stop(save=not told_to_stop.is_set(), cause="dashboard gone")

    # The app's end is gone when the command reader meets the end of the pipe, never when a send
    # fails: a detach the app sent just before it left is still in the pipe, and the reader takes
    # it first.
    channel = EventChannel(conn, on_gone=lambda: None)
    printer = LinePrinter()  # once detached, stdout is output.log: the headless lines go there
    started: list[ev.RunStarted] = []

    def send(event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            run_dir.append(Path(event.run_dir))
            started[:] = [event]
        if detached.is_set():
            printer(event)  # nobody listens any more: output.log is what `tail -f` shows
            return
        if isinstance(event, ev.Evaluation):
            printer.last_evaluation = event  # the per-class lines at the end, when it ends detached
        channel.put(wire.to_dict(event))
        if isinstance(event, ev.RunStarted) and detach_wanted.is_set():
            threading.Thread(target=detach, daemon=True).start()

    config = conn.recv()
    if not isinstance(config, dict):
        return 2
    trainer = Trainer(TrainConfig.from_dict(config), send, controls)
    console.install()  # a print into a closed pipe (the app gone) or a full output.log never ends the run
    console.on_failure(lambda name, why: trainer.emit(ev.Log(console.failure_note(name, why), level="warning")))

    def detach() -> None:
        if not run_dir:  # not started yet: detach as soon as the run directory exists
            detach_wanted.set()
            return
        log = run_dir[0] / "output.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        trainer.emit(ev.Detached(os.getpid(), str(log)))
        printer(started[0])  # what is training, as the headless lines begin
        printer.line(f"detached from the dashboard (pid {os.getpid()}); events also in {run_dir[0] / 'events.jsonl'}")
        detached.set()

    def stop(save: bool, cause: str) -> None:
        controls.stop(save=save, cause=cause)
        if trainer.end_if_not_started(cause):  # downloading or decoding: nothing to keep
            channel.close(timeout=10.0)
            os._exit(130)

    def read_commands() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                dashboard_gone()
                return
            name = command_in(message)
            if name == DETACH:
                detach()
            elif name in (Command.STOP, Command.STOP_SAVE):
                told_to_stop.set()
                stop(save=name == Command.STOP_SAVE, cause=cause_in(message) or STOPPED_FROM_A_DASHBOARD)
            elif name in COMMANDS:
                try:
                    controls.apply(name, raw=message)
                except ValueError as exc:
                    send(ev.Log(f"ignored a control command: {exc}", level="warning"))
            else:
                send(ev.Log(f"ignored malformed control command {message!r}", level="warning"))

    def on_signal(signum: int, _frame: object) -> None:
        threading.Thread(target=stop, args=(True, signal.Signals(signum).name), daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    threading.Thread(target=read_commands, name="control-reader", daemon=True).start()
    code = 0
    try:
        trainer.run()
    except UserError:
        code = 2
    except Exception:
        code = 1  # already sent as a Failed event with its traceback
    # The app may be stopped right now: wait a while for it to take the last events (they are in
    # events.jsonl too, where the app looks for a final event the channel did not bring).
    channel.close(timeout=30.0)
    conn.close()
    return code


if __name__ == "__main__":
    sys.exit(train_for_dashboard(Connection(int(sys.argv[1]))))
