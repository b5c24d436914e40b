"""Run a Trainer in a child process: events stream back, control commands go in.

The channel is a ``multiprocessing.connection.Connection`` over a socket pair,
carrying plain dicts (``events.to_dict`` one way, ``{"command": name}`` the
other), so the same protocol can later run over a Unix socket to a trainer that
outlives the app.

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
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from engine.run import console
from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import COMMANDS, STOPPED_FROM_A_DASHBOARD, Command, Controls, command_in, message
from engine.session.base import Session

#: Kernel buffer per socket direction (Linux doubles it). The trainer's in-memory queue, not the
#: kernel, absorbs a stalled dashboard (see EventChannel), so a small buffer costs nothing and
#: keeps what a resumed dashboard must first wade through short.
CHANNEL_BUFFER = 4096
DETACH = "detach"
"""The one command of the child's pipe alone: go on without the dashboard."""


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
                    self._conn.send(ev.to_dict(ev.Log(f"the dashboard fell behind: {dropped} progress events not "
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


def serve(conn: Connection) -> int:
    """Child side: read the config, train, stream events; apply commands as they come.

    ``{"command": "detach"}`` cuts the child loose: its output goes to the run directory's
    output.log, events only to events.jsonl, and the channel closing no longer stops it.
    A stop before training began (downloading, decoding) ends the child at once: there is
    nothing to save and nothing on disk yet.
    """
    from engine.run.errors import UserError
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

    channel = EventChannel(conn, dashboard_gone)

    def send(event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            run_dir.append(Path(event.run_dir))
        if detached.is_set():
            return  # nobody listens any more: the events are in events.jsonl
        channel.put(ev.to_dict(event))
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
                stop(save=name == Command.STOP_SAVE, cause=STOPPED_FROM_A_DASHBOARD)
            elif name in COMMANDS:
                controls.apply(name)
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


def final_event_in(run_dir: Path, since: float) -> ev.Event | None:
    """The run's Finished or Failed event written at or after ``since`` (this session's, not an
    earlier one's of a resumed run), from events.jsonl; None if there is none."""
    from engine.run.rundir import read_events

    ends = [e for e in read_events(run_dir) if isinstance(e, ev.Finished | ev.Failed) and e.t >= since]
    return ends[-1] if ends else None


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

    def send(self, command: str) -> bool:
        """Send a control command; False if the trainer is gone."""
        wire = message(command)  # ValueError for an unknown command
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
                event = ev.from_dict(data) if isinstance(data, dict) else None
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
