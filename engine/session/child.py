"""The dashboard's side of a trainer in a child process: events stream back, commands go in
(the child's side is engine/session/worker.py).

The channel is a ``multiprocessing.connection.Connection`` over a socket pair, carrying
plain dicts: ``events.to_dict`` one way, a command's message (engine/run/controls.py) the
other, the same message the control socket carries as JSON.

The child never outlives the app by accident: when the app's end of the channel
closes (the app quit or died) the child saves a checkpoint and stops at the next
batch boundary, unless it was told to stop already. The child's stdout and
stderr (prints, warnings, C-level messages, DataLoader workers) come back as
``Log`` events instead of reaching the terminal the dashboard draws on, and it
runs in its own session so terminal signals reach only the app, which decides.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from engine.run import events as ev
from engine.run import wire
from engine.run.config import TrainConfig
from engine.run.controls import message
from engine.run.steering import SteerAct
from engine.session.base import Session

#: Kernel buffer per socket direction (Linux doubles it). The trainer's in-memory queue, not the
#: kernel, absorbs a stalled dashboard (see engine/session/worker.py), so a small buffer costs nothing and
#: keeps what a resumed dashboard must first wade through short.
CHANNEL_BUFFER = 4096
DETACH = "detach"
"""The one command of the child's pipe alone: go on without the dashboard."""


def final_event_in(run_dir: Path, since: float) -> ev.Event | None:
    """The run's Finished or Failed event written at or after ``since`` (this session's, not an
    earlier one's of a resumed run), from events.jsonl; None if there is none."""
    from engine.run.rundir import read_events

    ends = [e for e in read_events(run_dir) if isinstance(e, ev.Finished | ev.Failed) and e.t >= since]
    return ends[-1] if ends else None


#: What a resumed run's earlier sessions are replayed without: their ends and phases (this
#: session has its own) and a finder's question that was answered then.
NOT_REPLAYED = (ev.Status, ev.Finished, ev.Failed, ev.Detached, ev.LrFound)


def resumed_history(cfg: TrainConfig) -> list[ev.Event]:
    """The earlier sessions' events of the run ``cfg`` resumes in its own directory, so a dashboard
    that resumes draws the whole curve (as ``attach`` does); [] when not resuming there."""
    from engine.run.rundir import checkpoint_run_dir, read_events

    if not cfg.resume:
        return []
    home = checkpoint_run_dir(Path(cfg.resume))
    if home is None or (cfg.run_dir and Path(cfg.run_dir).resolve() != home):
        return []
    return [e for e in read_events(home) if not isinstance(e, NOT_REPLAYED)]


class ChildSession(Session):
    """The trainer in a child process of this one, owned: it stops when the dashboard quits,
    unless detached."""

    can_detach = True
    can_kill = True

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.detached = False
        self._conn: Connection | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._partial = b""
        self._send_lock = threading.Lock()  # the UI thread and the terminal guard both send

    def start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        for sock in (parent_sock, child_sock):
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, CHANNEL_BUFFER)
        fd = child_sock.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.session.worker", str(fd)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            start_new_session=True,
            cwd=os.getcwd(),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        child_sock.close()  # only the child holds its end now, so EOF means it is gone
        self._conn = Connection(os.dup(parent_sock.fileno()))
        parent_sock.close()
        self._conn.send(self.cfg.to_dict())

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def detach(self) -> bool:
        """Ask the trainer to go on without us (it acknowledges with a Detached event)."""
        if self._conn is None:
            return False
        try:
            with self._send_lock:
                self._conn.send({"command": DETACH})
        except (BrokenPipeError, OSError):
            return False
        self.detached = True
        return True

    def send(self, command: str, cause: str = "", steer: SteerAct | None = None) -> bool:
        """Send a control command; False if the trainer is gone."""
        wire = message(command, cause, steer)  # ValueError for an unknown command
        if self._conn is None:
            return False
        try:
            with self._send_lock:
                self._conn.send(wire)
            return True
        except (BrokenPipeError, OSError):
            return False

    def _output_lines(self) -> tuple[list[str], bool]:
        """Complete lines of the child's output, and whether it has ended (a last line without
        a newline is given then: it must never keep the reader waiting)."""
        assert self.process is not None and self.process.stdout is not None
        chunk = os.read(self.process.stdout.fileno(), 65536)
        data = self._partial + chunk
        if not chunk:
            self._partial = b""
            return ([data.decode("utf-8", "replace").rstrip()] if data.strip() else []), True
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip() for line in lines if line.strip()], False

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        """Events until the child ends; None every ``poll`` s of silence (a chance to check for
        cancellation). If the channel brought no final event, the run's events.jsonl is asked for
        it (the app may have been stopped while the run ended); failing that, a Failed event says
        how the process ended."""
        assert self.process is not None and self._conn is not None and self.process.stdout is not None
        out = self.process.stdout
        sources: list[object] = [self._conn, out]
        final = False
        run_dir, run_began = "", 0.0
        yield from resumed_history(self.cfg)
        while sources:
            ready = wait(sources, timeout=poll)  # type: ignore[arg-type]
            if not ready:
                yield None
                continue
            if out in ready:
                lines, ended = self._output_lines()
                if ended:
                    sources.remove(out)
                for line in lines:
                    yield ev.Log(line, level="output")
            if self._conn in ready:
                try:
                    data = self._conn.recv()
                except (EOFError, OSError):
                    sources.remove(self._conn)
                    continue
                event = wire.from_dict(data) if isinstance(data, dict) else None
                if event is not None:
                    final = final or isinstance(event, ev.Finished | ev.Failed)
                    if isinstance(event, ev.RunStarted):
                        run_dir, run_began = event.run_dir, event.t
                    yield event
        if self.detached:
            return  # the child lives on by design: waiting for it would hold the app's exit
        code = self.process.wait()
        if not final and run_dir:
            last = final_event_in(Path(run_dir), since=run_began)
            if last is not None:
                final = True
                yield last
        if not final:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            yield ev.Failed("crash", f"the training process {how} without a final report")

    def kill(self) -> None:
        """Escalation: end the training process and its DataLoader workers now. Checkpoints on
        disk stay intact (every write is atomic); what was not saved is lost."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: workers included
            except (ProcessLookupError, PermissionError):
                self.process.kill()

    def close(self, timeout: float = 15.0) -> None:
        """Close the channel (the child then stops at its next batch) and make sure it is gone."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        if self.process is None:
            return
        if self.detached:  # it lives on by design
            if self.process.stdout is not None:
                self.process.stdout.close()
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
