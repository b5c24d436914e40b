"""Thread-safe controls that the trainer applies at the next batch boundary.

Any thread may call them (a key handler, a signal handler, the thread reading a
control channel). The trainer calls :meth:`Controls.take` between batches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.run.events import WireName


class Command(WireName):
    """What a dashboard (or a signal) asks of a running trainer. On both channels (the child's
    pipe and the control socket) a command travels as :func:`message`."""

    PAUSE = "pause"
    RESUME = "resume"
    TOGGLE_PAUSE = "toggle_pause"
    SAVE = "save"
    EVALUATE = "evaluate"
    STOP = "stop"
    STOP_SAVE = "stop_save"


COMMANDS = tuple(c.value for c in Command)

STOPPED_FROM_A_DASHBOARD = "stopped from a dashboard"
"""The stop cause of a stop command, whichever channel brought it."""


def message(command: str, cause: str = "") -> dict[str, str]:
    """A command as it travels: ``{"command": NAME}`` (a JSON line, or a pickled dict on a pipe),
    with ``"cause"`` when a stop says why (a lost terminal, a signal to the dashboard)."""
    return {"command": Command(command).value, **({"cause": cause[:200]} if cause else {})}


def cause_in(raw: object) -> str:
    """The cause a message gives for its command ("" when none)."""
    cause = raw.get("cause") if isinstance(raw, dict) else None
    return cause if isinstance(cause, str) else ""


def command_in(raw: object) -> str | None:
    """The command name a message carries (a dict from either channel); None if it carries none."""
    name = raw.get("command") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


@dataclass
class Requests:
    """What the trainer should do at this batch boundary."""

    save: bool = False
    evaluate: bool = False
    stop: bool = False
    save_on_stop: bool = False


class Controls:
    """Pause/resume, save-now, evaluate-now and stop requests."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._pending = Requests()
        self._stops = 0
        self.stop_cause = ""
        self.waiting_for_room = False
        """Set while the trainer waits for disk room to save its final checkpoint: a further stop gives up."""

    @property
    def paused(self) -> bool:
        with self._cond:
            return self._paused

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def toggle_pause(self) -> None:
        with self._cond:
            self._paused = not self._paused
            self._cond.notify_all()

    def save(self) -> None:
        with self._cond:
            self._pending.save = True
            self._cond.notify_all()

    def evaluate(self) -> None:
        with self._cond:
            self._pending.evaluate = True
            self._cond.notify_all()

    def stop(self, save: bool = False, cause: str = "stop requested") -> None:
        """Stop at the next batch boundary, optionally saving a checkpoint first."""
        with self._cond:
            self.stop_cause = self.stop_cause or cause
            self._pending.stop = True
            self._pending.save_on_stop = self._pending.save_on_stop or save
            self._paused = False
            self._stops += 1
            self._cond.notify_all()

    def apply(self, command: str, cause: str = STOPPED_FROM_A_DASHBOARD) -> None:
        """Apply a command (a :class:`Command` or its name); ValueError for an unknown one."""
        try:
            which = Command(command)
        except ValueError:
            raise ValueError(f"unknown control command {command!r}") from None
        if which in (Command.STOP, Command.STOP_SAVE):
            self.stop(save=which is Command.STOP_SAVE, cause=cause)
        else:
            getattr(self, which.value)()

    @property
    def stop_requested(self) -> bool:
        with self._cond:
            return self._pending.stop

    @property
    def stops(self) -> int:
        """How many stop requests came (a second one means: do not wait, end now)."""
        with self._cond:
            return self._stops

    def wait_for_stop(self, seen: int, timeout: float) -> bool:
        """Block up to ``timeout`` s until a stop request beyond the first ``seen``; True if one came."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stops > seen, timeout)

    def take(self) -> Requests:
        """Return and clear pending one-shot requests (stop stays set)."""
        with self._cond:
            taken = self._pending
            self._pending = Requests(stop=taken.stop, save_on_stop=taken.save_on_stop)
            return taken

    def wait_while_paused(self, timeout: float) -> bool:
        """Block up to ``timeout`` s while paused and nothing is pending; True if still paused."""
        with self._cond:
            p = self._pending
            if self._paused and not (p.save or p.evaluate or p.stop):
                self._cond.wait(timeout)
            return self._paused
