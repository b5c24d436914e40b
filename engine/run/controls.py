"""Thread-safe controls that the trainer applies at the next batch boundary.

Any thread may call them (a key handler, a signal handler, the thread reading a
control channel). The trainer calls :meth:`Controls.take` between batches.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.run.events import WireName
from engine.run.steering import SteerAct


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
    STEER = "steer"
    """Change the LR multiplier, the length or a stop rule (``"steer"`` holds a SteerAct's wire form)."""


COMMANDS = tuple(c.value for c in Command)

STOPPED_FROM_A_DASHBOARD = "stopped from a dashboard"
"""The stop cause of a stop command, whichever channel brought it."""
PRUNED_CAUSE = "pruned by the sweep"
"""The stop cause of a trial its sweep pruned (engine/sweep): listed as ``pruned``."""

STOPPED_FROM_SWEEP = "stopped from the sweep screen"
"""The stop cause of a trial stopped by hand on the sweep screen: failed, and the sweep goes on."""


def message(command: str, cause: str = "", steer: SteerAct | None = None) -> dict[str, Any]:
    """A command as it travels: ``{"command": NAME}`` (a JSON line, or a pickled dict on a pipe),
    with ``"cause"`` when a stop says why (a lost terminal, a signal to the dashboard) and
    ``"steer"`` for a steering act."""
    wire: dict[str, Any] = {"command": Command(command).value}
    if cause:
        wire["cause"] = cause[:200]
    if steer is not None:
        wire["steer"] = steer.to_wire()
    return wire


def steer_in(raw: object) -> SteerAct:
    """The steering act a message carries; ValueError (one line) for a malformed one."""
    return SteerAct.from_wire(raw.get("steer") if isinstance(raw, dict) else None)


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
    steer: SteerAct | None = None


class Controls:
    """Pause/resume, save-now, evaluate-now and stop requests."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._paused = False
        self._pending = Requests()
        self._steers: deque[SteerAct] = deque(maxlen=100)
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

    def steer(self, act: SteerAct) -> None:
        """Queue a steering act (one is applied per batch boundary, in the order they came)."""
        with self._cond:
            self._steers.append(act)
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

    def apply(self, command: str, cause: str = STOPPED_FROM_A_DASHBOARD, raw: object = None) -> None:
        """Apply a command (a :class:`Command` or its name; a steer takes its act from the whole
        message ``raw``); ValueError for an unknown or malformed one."""
        try:
            which = Command(command)
        except ValueError:
            raise ValueError(f"unknown control command {command!r}") from None
        if which is Command.STEER:
            self.steer(steer_in(raw))
        elif which in (Command.STOP, Command.STOP_SAVE):
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
            if self._steers:
                taken.steer = self._steers.popleft()
            return taken

    def wait_while_paused(self, timeout: float) -> bool:
        """Block up to ``timeout`` s while paused and nothing is pending; True if still paused."""
        with self._cond:
            p = self._pending
            if self._paused and not (p.save or p.evaluate or p.stop or self._steers):
                self._cond.wait(timeout)
            return self._paused
