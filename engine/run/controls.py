"""Thread-safe controls that the trainer applies at the next batch boundary.

Any thread may call them (a key handler, a signal handler, the thread reading a
control channel). The trainer calls :meth:`Controls.take` between batches.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

COMMANDS = ("pause", "resume", "toggle_pause", "save", "evaluate", "stop", "stop_save")


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

    def command(self, name: str) -> None:
        """Apply a command by name (as sent over a control channel)."""
        if name not in COMMANDS:
            raise ValueError(f"unknown control command {name!r}")
        if name == "stop_save":
            self.stop(save=True)
        else:
            getattr(self, name)()

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
