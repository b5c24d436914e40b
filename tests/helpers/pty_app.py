"""The real dashboard in a real pseudo-terminal: what an SSH session or tmux gives it.

Closing the master end is what sshd or tmux does when the link drops or the session is
killed. Waits are on files and processes, with generous ceilings only as hang guards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import threading
from pathlib import Path

from tests.helpers.common import ROOT
from tests.helpers.waiting import HANG_GUARD_S, wait_until


class PtyApp:
    """``cifar-tui ARGS`` running in a pty of 120x40; a thread drains its output like a terminal does."""

    def __init__(self, args: list[str], cwd: Path = ROOT) -> None:
        self.output = bytearray()
        self._reading = True
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: become the app
            try:
                os.chdir(cwd)
                env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
                os.execvpe(sys.executable, [sys.executable, "-m", "tui.cli", *args], env)
            finally:
                os._exit(127)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._reading:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    data = os.read(self.master, 65536)
                    if not data:
                        return
                    self.output += data
            except OSError:
                return

    def stop_reading(self) -> None:
        """Stop draining the terminal (a stalled link): the app's writes back up."""
        self._reading = False
        self._reader.join()

    def hang_up(self) -> None:
        """What sshd or tmux does when the link drops: close the master."""
        self.stop_reading()
        os.close(self.master)
        self.master = -1

    def said(self, last: int = 0) -> str:
        """What the terminal was sent, without escape sequences (the last ``last`` characters)."""
        text = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", bytes(self.output)).decode(errors="replace")
        return text[-last:] if last else text

    def poll(self) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self, timeout: float = HANG_GUARD_S) -> int:
        wait_until(lambda: self.poll() is not None, timeout, "the app to exit")
        assert self.code is not None
        return self.code

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.master >= 0:
            self.stop_reading()
            os.close(self.master)
            self.master = -1


def count_in_events(run: Path, needle: str) -> int:
    try:
        return (run / "events.jsonl").read_text(encoding="utf-8", errors="replace").count(needle)
    except FileNotFoundError:
        return 0
