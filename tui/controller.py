"""The dashboard's hold on one run: its session, the events it brought, the lifecycle of the
dashboard around it (one state, not a handful of flags) and the exit code that follows.

Plain Python, no Textual: the app calls it from the UI loop, the worker thread hands it events
and the terminal guard's thread tells it that the terminal is gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import Command
from engine.run.errors import exit_code
from engine.run.events import Phase
from engine.session.base import Session
from tui.state import RunState

SessionFactory = Callable[[TrainConfig], Session]


class Lifecycle(Enum):
    """Where the dashboard is in its own life (the run's phase is ``RunState.state``)."""

    RUNNING = "running"
    """Showing the run (training, attached, or ended and still on screen)."""
    QUITTING = "quitting"
    """The trainer was told to stop; the dashboard leaves once it has ended (q again: at once)."""
    DETACHING = "detaching"
    """The trainer was asked to go on alone; the dashboard leaves at its Detached event."""
    DETACHED = "detached"
    """The trainer said it goes on alone: the dashboard leaves (exit 0)."""
    TERMINAL_LOST = "terminal lost"
    """The terminal went away or a stop signal came: the trainer was told (stop, or detach)."""
    LEAVING = "leaving"
    """The dashboard is exiting with :meth:`RunController.exit_code`."""


class RunController:
    """One session at a time, the run state folded from its events, and the lifecycle."""

    def __init__(self, factory: SessionFactory, point_budget: int = 400) -> None:
        self.factory = factory
        self.session: Session | None = None
        self.session_ready = False
        """Set once the session has started: commands can reach the trainer (or be refused by it)."""
        self.run_state = RunState(point_budget=point_budget)
        self.lifecycle = Lifecycle.RUNNING
        self.signal_code = 0
        """128 + the signal (or 129: terminal lost) that ended the dashboard; 0 if none."""
        self.detached_message = ""
        self.events_seen = 0
        self.last_event_at = time.monotonic()
        self._buffer: list[ev.Event] = []
        self._lock = threading.Lock()

    # -- the session ---------------------------------------------------------------------------
    def open(self, cfg: TrainConfig) -> Session:
        """A new session for ``cfg`` (called from the worker thread that follows it)."""
        self.session_ready = False
        self.session = self.factory(cfg)
        return self.session

    def restart(self, point_budget: int) -> None:
        """A fresh run state for a new run (the offline fallback starts one)."""
        self.run_state = RunState(point_budget=point_budget)

    @property
    def owns_training(self) -> bool:
        """False when attached to a run that lives in another process: quitting leaves it running."""
        return self.session is None or self.session.owns_training

    def training_running(self) -> bool:
        return self.session is not None and self.session.alive() and not self.run_state.ended

    def can_detach(self) -> bool:
        return self.training_running() and self.owns_training and self.session is not None and self.session.can_detach

    # -- events (worker thread in, UI loop out) -------------------------------------------------
    def put(self, event: ev.Event) -> None:
        with self._lock:
            self._buffer.append(event)

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def take(self) -> list[ev.Event]:
        """Fold every buffered event into the run state; the ones folded, in order."""
        with self._lock:
            batch, self._buffer = self._buffer, []
        if batch:
            self.last_event_at = time.monotonic()
        folded = []
        for event in batch:
            try:
                self.run_state.apply(event)
            except Exception as exc:  # a damaged events.jsonl (attach) must not take the dashboard down
                self.run_state.log.append(("warning", f"skipped a damaged {event.kind} event ({type(exc).__name__})"))
                continue
            self.events_seen += 1
            folded.append(event)
            if self.lifecycle is Lifecycle.DETACHING and isinstance(event, ev.Detached):
                self.detached_message = event.message
                self.lifecycle = Lifecycle.DETACHED
        return folded

    # -- the lifecycle ---------------------------------------------------------------------------
    def quit_to(self, command: Command) -> bool:
        """Tell the trainer to stop (``stop`` or ``stop_save``) and wait for its end; False when
        already quitting."""
        if self.lifecycle is Lifecycle.QUITTING:
            return False
        self.lifecycle = Lifecycle.QUITTING
        assert self.session is not None
        self.session.send(command)
        self.run_state.message = (
            "saving a checkpoint and stopping… (q again: stop now without waiting)"
            if command is Command.STOP_SAVE
            else "stopping… (q again: stop now)"
        )
        self.run_state.version += 1
        return True

    def detach(self) -> bool:
        """Ask the trainer to go on alone; the dashboard leaves at its Detached event."""
        if not self.can_detach() or self.session is None or not self.session.detach():
            return False
        self.lifecycle = Lifecycle.DETACHING
        return True

    def kill(self, why: str) -> None:
        """Stop waiting for the trainer: end its process now (checkpoints on disk stay intact)."""
        if self.session is not None and self.session.can_kill and self.owns_training:
            self.session.kill()
            self.run_state.log.append(("warning", f"{why}: training process ended without waiting"))

    def terminal_lost(self, reason: str, code: int, *, hangup: bool, on_hangup: str) -> None:
        """The terminal is gone or a stop signal came (called from the guard's thread): the trainer
        is told at once; ``on_hangup="detach"`` leaves it running after a hang-up."""
        self.signal_code = code
        session = self.session
        if session is not None and self.owns_training and session.alive() and not self.run_state.ended:
            if hangup and on_hangup == "detach" and session.can_detach and session.detach():
                self.detached_message = f"terminal lost ({reason}): training continues in the background"
            else:
                session.send(Command.STOP_SAVE, cause=reason)  # the run says what ended it
        self.lifecycle = Lifecycle.TERMINAL_LOST

    def exit_code(self) -> int:
        """The dashboard's exit code: a signal's, 0 for an attached dashboard leaving, else how
        the run ended (130 while it had not: stopped early)."""
        end = self.run_state.failed or self.run_state.finished
        return exit_code(end, signal=max(0, self.signal_code - 128), attached=not self.owns_training)

    def pause_note(self) -> str:
        return "resuming…" if self.run_state.state == Phase.PAUSED else "pausing at the next batch…"
