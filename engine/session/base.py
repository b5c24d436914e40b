"""A dashboard's handle on one run's trainer, whichever way the trainer lives: a child process
of this one, a run started elsewhere and attached to, or data-parallel ranks this command
launched. What a kind of session can do beyond the common part it declares (``can_detach``,
``can_kill``); the others raise NotImplementedError, so callers ask instead of probing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from engine.run import events as ev
from engine.run.steering import SteerAct


class Session(ABC):
    """Start, follow the events, send commands, close."""

    owns_training: bool = True
    """Quitting the dashboard ends the run (False: attached to a run that lives on its own)."""
    remote: bool = False
    """Commands cross a socket to another process and may take seconds: send them off the UI loop."""

    @abstractmethod
    def start(self) -> None:
        """Start (or find) the trainer."""

    @abstractmethod
    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        """The run's events until it ends; None every ``poll`` s of silence (a chance to stop)."""

    @abstractmethod
    def send(self, command: str, cause: str = "", steer: SteerAct | None = None) -> bool:
        """Send a control command (engine.run.controls.Command), a stop with its ``cause`` when
        it is not a dashboard's key, a steer with its act; False if the trainer did not take it."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the trainer is still running."""

    @abstractmethod
    def close(self, timeout: float = 15.0) -> None:
        """Let go of the trainer (an owned child stops; a detached or attached one goes on)."""

    @property
    def pid(self) -> int | None:
        """The trainer's process id, once known."""
        return None

    @property
    def can_detach(self) -> bool:
        """Whether :meth:`detach` may leave the trainer running without this session."""
        return False

    def detach(self) -> bool:
        """Ask the trainer to go on alone (a Detached event follows); False if it cannot now."""
        raise NotImplementedError(f"{type(self).__name__} cannot detach")

    @property
    def can_kill(self) -> bool:
        """Whether :meth:`kill` can end the trainer at once."""
        return False

    def kill(self) -> None:
        """End the trainer now, without waiting for it (checkpoints on disk stay intact)."""
        raise NotImplementedError(f"{type(self).__name__} cannot kill its trainer")
