"""A run's control channel: a Unix socket that takes commands from dashboards that attach later.

The socket lives in a private folder (``/tmp/cifar-tui-<uid>/``, mode 0700: Unix socket paths
are limited to ~100 bytes, run directories are not), its path is recorded in the run
directory's ``trainer.json`` together with the trainer's pid. Only the owner's user may send
commands: the folder's mode keeps others out, and the server checks each peer's uid
(SO_PEERCRED) as well. A malformed command does nothing but log a warning.

Protocol: one JSON object per line, ``{"command": "pause"}``; each gets one reply line,
``{"ok": true}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.run.controls import STOPPED_FROM_A_DASHBOARD, Controls, cause_in, command_in, message
from engine.run.fileio import atomic_write_json
from engine.run.steering import SteerAct

TRAINER_FILE = "trainer.json"


def process_start_time(pid: int | None = None) -> float | None:
    """When a live process started (to tell a trainer from a reused pid); None if gone or a zombie."""
    try:
        import psutil

        proc = psutil.Process(pid or os.getpid())
        if proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return None
        return float(proc.create_time())
    except Exception:
        return None


def trainer_alive(run_dir: Path) -> bool:
    """Whether the process recorded in the run's trainer.json is still that same process."""
    try:
        info = json.loads((run_dir / TRAINER_FILE).read_text())
        pid, started = int(info["pid"]), info.get("started")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if info.get("ended"):  # the trainer said goodbye (its process may live on: an in-process run)
        return False
    return same_process(pid, started)


def same_process(pid: int, started: float | None) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``started`` (a reused pid
    is another process); any live ``pid`` when the start is not known."""
    now = process_start_time(pid)
    if now is None:
        return False
    return started is None or abs(now - float(started)) < 1.0


def control_folder() -> Path:
    """``/tmp/cifar-tui-<uid>/``, checked with lstat: a real directory (not a symlink), owned by
    this user, mode 0700. Anything else in its place is refused (OSError), never used."""
    folder = Path(tempfile.gettempdir()) / f"cifar-tui-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise OSError(f"{folder} is not a private folder of yours (a symlink, a file or another user's); remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # ours and a real folder (lstat above): tighten it
    return folder


def socket_path(run_dir: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(run_dir.resolve())).hexdigest()[:16]
    return control_folder() / f"{digest}.sock"


def remove_stale_sockets(folder: Path) -> None:
    """Sockets of trainers that died without cleaning up (kill -9): nobody answers, remove them."""
    for path in folder.glob("*.sock"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            probe.close()


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Accepts command connections in a thread; applies commands to ``controls``.

    What a client can do is bounded: at most ``MAX_CLIENTS`` connections at once, lines of at
    most ``MAX_LINE`` bytes, ``IDLE_S`` seconds of silence before the server hangs up (clients
    reconnect). A bad or abandoned connection costs a warning at most, never a traceback."""

    MAX_CLIENTS = 16
    MAX_LINE = 1024
    IDLE_S = 600.0

    def __init__(self, run_dir: Path, controls: Controls, warn: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.controls = controls
        self.warn = warn
        self.path = socket_path(run_dir)
        remove_stale_sockets(self.path.parent)
        self.path.unlink(missing_ok=True)
        self._slots = threading.BoundedSemaphore(self.MAX_CLIENTS)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self.owner_uid = os.getuid()
        threading.Thread(target=self._accept, name="control-server", daemon=True).start()

    def record(self, extra: dict[str, Any]) -> None:
        """Write trainer.json: how to reach this trainer and how to tell whether it still runs."""
        atomic_write_json(self.run_dir / TRAINER_FILE, {"pid": os.getpid(), "socket": str(self.path), **extra})

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                with contextlib.suppress(OSError), conn:
                    conn.sendall(b'{"ok": false, "error": "too many connections"}\n')
                continue
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.IDLE_S)
            with conn, conn.makefile("rwb") as stream:
                uid = peer_uid(conn)
                if uid != self.owner_uid:
                    self.warn(
                        f"refused a control connection from uid {uid} (only uid {self.owner_uid} may steer this run)"
                    )
                    stream.write(b'{"ok": false, "error": "refused: not the owner of this run"}\n')
                    return
                while True:
                    raw = stream.readline(self.MAX_LINE + 1)
                    if not raw:
                        return
                    if len(raw) > self.MAX_LINE:
                        self.warn(f"dropped a control connection sending a line over {self.MAX_LINE} bytes")
                        stream.write(b'{"ok": false, "error": "line too long"}\n')
                        return
                    stream.write((json.dumps(self.apply(raw)) + "\n").encode())
                    stream.flush()
        except (OSError, ValueError):
            pass  # the client went away, stalled past IDLE_S, or sent garbage: nothing to do
        finally:
            self._slots.release()

    def apply(self, raw: bytes) -> dict[str, Any]:
        try:
            sent = json.loads(raw)
        except (ValueError, RecursionError):
            self.warn(f"ignored malformed control command {raw[:80]!r}")
            return {"ok": False, "error": "malformed command"}
        try:
            self.controls.apply(command_in(sent) or "", cause_in(sent) or STOPPED_FROM_A_DASHBOARD, sent)
        except ValueError as exc:
            self.warn(f"ignored a control command: {exc}")
            return {"ok": False, "error": str(exc)}
        return {"ok": True}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((self.run_dir / TRAINER_FILE).read_text())
            if info.get("pid") == os.getpid():
                atomic_write_json(self.run_dir / TRAINER_FILE, {**info, "ended": True})


class ControlClient:
    """A dashboard's end: send a command, read the reply."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._stale = False
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        try:
            self.sock.connect(str(self.path))
            if peer_uid(self.sock) != os.getuid():  # someone else's socket in our place: never talk to it
                raise PermissionError(f"{self.path} is not served by one of your processes")
        except OSError:
            self.sock.close()
            raise
        self.stream = self.sock.makefile("rwb")

    def send(self, command: str, cause: str = "", steer: SteerAct | None = None) -> dict[str, Any]:
        """Send one command and read the reply; reconnects once if the trainer hung up an idle link.
        A reply that does not come within ``timeout`` fails this command (it may still be applied:
        never re-sent, a toggle would toggle twice) and the next one starts on a fresh connection:
        a socket file that timed out cannot be read again."""
        if self._stale:
            self._stale = False
            self._connect()
        for attempt in (1, 2):
            try:
                self.stream.write((json.dumps(message(command, cause, steer)) + "\n").encode())
                self.stream.flush()
                line = self.stream.readline(ControlServer.MAX_LINE)
            except (BrokenPipeError, ConnectionResetError):
                line = b""
            except TimeoutError:
                self.close()
                self._stale = True
                return {"ok": False, "error": f"no reply from the trainer in {self.timeout:g} s"}
            if line:
                reply = json.loads(line)
                return reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"}
            if attempt == 1:
                self.close()
                self._connect()
        return {"ok": False, "error": "the trainer closed the connection"}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
            self.sock.close()
