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
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from pathlib import Path

from engine import events as ev
from engine.config import TrainConfig
from engine.controls import COMMANDS, Controls


def serve(conn: Connection) -> int:
    """Child side: read the config, train, stream events; apply commands as they come.

    ``{"command": "detach"}`` cuts the child loose: its output goes to the run directory's
    output.log, events only to events.jsonl, and the channel closing no longer stops it.
    """
    from engine.errors import UserError
    from engine.trainer import Trainer

    controls = Controls()
    lock = threading.Lock()
    told_to_stop = threading.Event()
    detached = threading.Event()
    detach_wanted = threading.Event()
    run_dir: list[Path] = []

    def send(event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            run_dir.append(Path(event.run_dir))
        if detached.is_set():
            return  # nobody listens any more: the events are in events.jsonl
        try:
            with lock:
                conn.send(ev.to_dict(event))
        except (BrokenPipeError, EOFError, OSError):
            controls.stop(save=not told_to_stop.is_set(), cause="dashboard gone")  # keep the work, then stop
        if isinstance(event, ev.RunStarted) and detach_wanted.is_set():
            threading.Thread(target=detach, daemon=True).start()

    config = conn.recv()
    if not isinstance(config, dict):
        return 2
    trainer = Trainer(TrainConfig.from_dict(config), send, controls)

    def detach() -> None:
        if not run_dir:  # not started yet: detach as soon as the run directory exists
            detach_wanted.set()
            return
        log = run_dir[0] / "output.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        trainer.emit(ev.Log(f"detached: training continues in the background (pid {os.getpid()}); output in {log}"))
        detached.set()

    def read_commands() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                if not detached.is_set() and not detach_wanted.is_set():
                    controls.stop(save=not told_to_stop.is_set(), cause="dashboard gone")
                return
            name = message.get("command") if isinstance(message, dict) else None
            if name == "detach":
                detach()
            elif name in ("stop", "stop_save"):
                told_to_stop.set()
                controls.stop(save=name == "stop_save", cause="stopped from the dashboard")
            elif name in COMMANDS:
                controls.command(name)
            else:
                send(ev.Log(f"ignored malformed control command {message!r}", level="warning"))

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, _: controls.stop(save=True, cause=signal.Signals(signum).name))
    threading.Thread(target=read_commands, name="control-reader", daemon=True).start()
    try:
        trainer.run()
    except UserError:
        return 2
    except Exception:
        return 1  # already sent as a Failed event with its traceback
    finally:
        with lock:
            conn.close()
    return 0


class TrainerProcess:
    """The app's handle on a training child process."""

    owns_training = True

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.detached = False
        self._conn: Connection | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._partial = b""
        self._send_lock = threading.Lock()  # the UI thread and the terminal guard both send

    def start(self) -> None:
        parent_sock, child_sock = socket.socketpair()
        fd = child_sock.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(fd)],
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
        """Ask the trainer to go on without us (it acknowledges with a 'detached:' Log event)."""
        if self._conn is None:
            return False
        try:
            with self._send_lock:
                self._conn.send({"command": "detach"})
        except (BrokenPipeError, OSError):
            return False
        self.detached = True
        return True

    def send(self, command: str) -> bool:
        """Send a control command; False if the trainer is gone."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        if self._conn is None:
            return False
        try:
            with self._send_lock:
                self._conn.send({"command": command})
            return True
        except (BrokenPipeError, OSError):
            return False

    def _output_lines(self) -> list[str]:
        assert self.process is not None and self.process.stdout is not None
        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return []
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip() for line in lines if line.strip()]

    def events(self, poll: float = 0.2) -> Iterator[ev.Event | None]:
        """Events until the child ends; None every ``poll`` s of silence (a chance to check for
        cancellation). If the child dies without a final event, a Failed event says so."""
        assert self.process is not None and self._conn is not None and self.process.stdout is not None
        out = self.process.stdout
        sources: list[object] = [self._conn, out]
        final = False
        while sources:
            ready = wait(sources, timeout=poll)  # type: ignore[arg-type]
            if not ready:
                yield None
                continue
            if out in ready:
                lines = self._output_lines()
                if not lines and not self._partial:
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
                    yield event
        code = self.process.wait()
        if not final:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            yield ev.Failed("crash", f"the training process {how} without a final report")

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
