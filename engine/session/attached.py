"""Attach the dashboard to a run that lives elsewhere: replay events.jsonl, then follow it.

Commands go through the run's control socket (see engine.run.control_socket). Quitting an attached
dashboard never stops training; stopping is an explicit, confirmed action (key x).
A finished run, or one whose trainer is gone, attaches as a read-only replay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from engine.run import events as ev
from engine.run import wire
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.events import Phase
from engine.run.rundir import EVENTS
from engine.run.steering import SteerAct
from engine.session.base import Session


class AttachedSession(Session):
    """A run that lives in another process, followed through its run directory and steered over
    its control socket."""

    owns_training = False
    remote = True  # commands cross the control socket: the app sends them off the UI thread

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.client: ControlClient | None = None
        self._closed = False
        self._pid: int | None = None
        self._tail: EventTail | None = None

    def start(self) -> None:
        try:
            info = json.loads((self.run_dir / TRAINER_FILE).read_text())
            self._pid = int(info["pid"])
            if trainer_alive(self.run_dir):
                self.client = ControlClient(Path(info["socket"]))
        except (OSError, ValueError, KeyError, TypeError):
            self.client = None  # read-only replay

    @property
    def pid(self) -> int | None:
        return self._pid

    def alive(self) -> bool:
        return not self._closed and trainer_alive(self.run_dir)

    def send(self, command: str, cause: str = "", steer: SteerAct | None = None) -> bool:
        if self.client is None:
            return False
        try:
            return bool(self.client.send(command, cause, steer).get("ok"))
        except (OSError, ValueError):
            return False

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        if not (self.run_dir / EVENTS).is_file():
            yield ev.Failed("run_dir", f"{self.run_dir} holds no run (no {EVENTS})")
            return
        final_seen = False
        with EventTail(self.run_dir) as tail:
            self._tail = tail
            while not self._closed:
                events = tail.read()
                if events:
                    for event in events:
                        yield event
                        final_seen = final_seen or isinstance(event, ev.Finished | ev.Failed)
                    continue
                if final_seen and not self.alive():
                    return  # the run is over and fully replayed
                if not self.alive():
                    yield ev.Log("the trainer process is gone without a final report (killed or rebooted); "
                                 f"resume with --resume {self.run_dir / 'checkpoints' / 'last.pt'}", level="warning")  # fmt: skip
                    yield ev.Status(Phase.STOPPED, "trainer process gone")
                    return
                yield None
                time.sleep(poll)

    @property
    def skipped_lines(self) -> int:
        """Lines of events.jsonl that were not an event (torn, or from a newer version)."""
        return self._tail.skipped if self._tail is not None else 0

    def close(self, timeout: float = 15.0) -> None:
        self._closed = True
        if self.client is not None:
            self.client.close()


class LaunchedSession(AttachedSession):
    """The data-parallel ranks that this dashboard launched (``cifar-tui --nproc N``), followed
    through their run directory like an attached run, but owned as one trainer process is:
    q asks to stop the run, a lost terminal saves and stops it (or, with --on-hangup detach,
    leaves it), d detaches. The ranks run in their own session, so detaching just lets go."""

    owns_training = True
    can_detach = True

    def __init__(self, run_dir: Path, log: Path) -> None:
        super().__init__(run_dir)
        self.log = log
        self._detaching = False

    def detach(self) -> bool:
        if not self.alive():
            return False
        self._detaching = True
        return True

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        """The run's events; after ``detach``, a Detached event at once (the app then leaves)."""
        for event in super().events(poll):
            if self._detaching:
                self._detaching = False
                yield ev.Detached(self.pid or 0, str(self.log))
            yield event


class EventTail:
    """The events a run directory's events.jsonl gains, read as they are written: a torn last
    line waits for its end; a line that is not an event (damaged, or from a newer version) is
    skipped and counted, never fatal."""

    def __init__(self, run_dir: Path, offset: int = 0) -> None:
        self.path = run_dir / EVENTS
        self.offset = offset
        self.skipped = 0
        self._file: BinaryIO | None = None
        self._partial = b""

    def __enter__(self) -> EventTail:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read(self) -> list[ev.Event]:
        """The events written since the last read (none while the file does not exist yet)."""
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115 (held across reads, closed by close())
            except FileNotFoundError:
                return []
            self._file.seek(self.offset)
        chunk = self._file.read()
        if not chunk:
            return []
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        events = []
        for line in lines:
            event = wire.from_json_line(line)
            if event is not None:
                events.append(event)
            elif line.strip():
                self.skipped += 1
        return events

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
