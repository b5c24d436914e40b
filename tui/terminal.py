"""A terminal that vanishes (SSH drop, tmux kill-session) or a termination signal must end the app.

Textual's Linux driver, as of 8.x, keeps selecting on a stdin at EOF (its input thread spins),
its writer thread dies on the first failed write (EIO on a hung-up pty), after which the
main thread blocks forever in ``WriterThread.write`` -> ``Queue.put``, and termination
signals handled on the asyncio loop never run. None of that is ours to patch, so the guard
works from the outside and stays correct when Textual fixes it:

- the driver's output file is wrapped: a failed write marks the terminal lost and later
  writes are dropped, so the writer thread never dies and the UI never blocks on it;
- a watchdog thread polls stdin and the output for POLLHUP/POLLERR (it never reads);
- SIGTERM and SIGHUP get plain ``signal.signal`` handlers, which run in the main thread
  even while it is blocked on a lock, and only hand the work to the watchdog thread.

Whatever comes first, the watchdog calls ``on_lost(reason, exit_code, hangup)`` once (the app
stops or detaches its trainer and asks its loop to exit); if the process is still there
``grace_s`` later it leaves with ``os._exit`` (the trainer child, which owns the run, saves and
stops by itself when our end of its channel closes).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver

LostHandler = Callable[[str, int, bool], None]
_HANGUP_MASK = select.POLLHUP | select.POLLERR | select.POLLNVAL


class GuardedOutput:
    """The terminal as the driver's writer thread sees it: write errors are reported, never raised."""

    def __init__(self, file: IO[str], guard: TerminalGuard) -> None:
        self._file = file
        self._guard = guard

    def write(self, text: str) -> int:
        if self._guard.hung_up:
            return len(text)
        try:
            return self._file.write(text)
        except UnicodeEncodeError:  # a file name that is not valid UTF-8 (surrogates): show U+FFFD instead
            encoding = getattr(self._file, "encoding", None) or "utf-8"
            return self.write(text.encode(encoding, "replace").decode(encoding))
        except (OSError, ValueError) as exc:
            self._guard.lose(f"terminal write failed ({exc})", hangup=True)
            return len(text)

    def flush(self) -> None:
        if self._guard.hung_up:
            return
        try:
            self._file.flush()
        except (OSError, ValueError) as exc:
            self._guard.lose(f"terminal write failed ({exc})", hangup=True)

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class TerminalGuard:
    """Notices a lost terminal or a termination signal and makes sure the process ends."""

    def __init__(self, on_lost: LostHandler, *, grace_s: float = 30.0, poll_s: float = 0.25,
                 served: bool = False) -> None:  # fmt: skip
        self.on_lost = on_lost
        self.served = served  # under textual-serve: the "terminal" is two pipes to the server
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.reason = ""
        self.exit_code = 0
        self.hung_up = False
        self.driver: LinuxDriver | None = None
        self._lost = threading.Event()
        self._done = threading.Event()
        self._lock = threading.RLock()  # a signal may arrive while the main thread holds it
        self._previous: dict[int, Any] = {}

    # -- setup -------------------------------------------------------------------------------
    def driver_class(self) -> type[LinuxDriver] | None:
        """A LinuxDriver whose output goes through :class:`GuardedOutput` and that registers itself;
        None under a driver chosen by the environment (textual-serve's web driver: no terminal)."""
        if os.environ.get("TEXTUAL_DRIVER"):
            return None
        guard = self

        class GuardedDriver(LinuxDriver):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                if self._file is not None:
                    self._file = GuardedOutput(self._file, guard)  # type: ignore[assignment]
                guard.driver = self

        return GuardedDriver

    def start(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        threading.Thread(target=self._watch, name="terminal-guard", daemon=True).start()

    def claim_signals(self) -> None:
        """Take SIGTERM and SIGHUP back once the app runs: Textual's web driver puts a handler of
        its own on the asyncio loop for SIGTERM, which asks the app to exit and is not enough."""
        if self._done.is_set():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def stop(self) -> None:
        """The app is done (normally): stop watching, restore the signal handlers."""
        self._done.set()
        for sig, handler in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        self._previous.clear()

    # -- detection ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        # Runs in the main thread wherever it is blocked: only record and wake the watchdog.
        name = signal.Signals(signum).name
        self.lose(name, code=128 + signum, hangup=False)

    def lose(self, reason: str, *, code: int = 128 + signal.SIGHUP, hangup: bool) -> None:
        """Record the first cause; a later hang-up still marks the terminal unusable."""
        with self._lock:
            if hangup:
                self.hung_up = True
            if self._lost.is_set():
                return
            self.reason, self.exit_code = reason, code
            self._lost.set()

    def _terminal_fds(self) -> list[int]:
        """The terminal's descriptors; served (textual-serve), the pipes to and from the server:
        their far end closes when the browser tab's session ends or the server dies, however."""
        if self.served:
            return [0, 1]
        fds = []
        for stream in (sys.__stdin__, sys.__stderr__):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                if stream is not None and os.isatty(stream.fileno()):
                    fds.append(stream.fileno())
        return fds

    def _watch(self) -> None:
        poller = select.poll()
        for fd in self._terminal_fds():
            poller.register(fd, 0)  # no events asked: poll reports only HUP, ERR and NVAL
        while not self._done.is_set() and not self._lost.is_set():
            if any(mask & _HANGUP_MASK for _fd, mask in poller.poll(self.poll_s * 1000)):
                self.lose("terminal hung up", hangup=True)
        if self._done.is_set() and not self._lost.is_set():
            return
        # A signal came first (SIGHUP usually announces a hang-up): is the terminal still there?
        if any(mask & _HANGUP_MASK for _fd, mask in poller.poll(0)):
            self.lose("terminal hung up", hangup=True)
        self._handle_loss()

    def _handle_loss(self) -> None:
        if self.hung_up:
            self._silence_terminal()
        try:
            self.on_lost(self.reason, self.exit_code, self.hung_up)
        except Exception:  # the hard exit below still happens
            pass
        if self._done.wait(self.grace_s):
            return
        self._restore_terminal()
        os._exit(self.exit_code or 1)

    def _silence_terminal(self) -> None:
        """Nothing can reach a hung-up terminal: stop the input thread spinning on EOF and point
        stdout/stderr at /dev/null so late prints neither fail nor block."""
        exit_event = getattr(self.driver, "exit_event", None)
        if isinstance(exit_event, threading.Event):
            exit_event.set()
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in (1, 2):
                os.dup2(null, fd)
            os.close(null)

    def _restore_terminal(self) -> None:
        """Last resort before a hard exit from a live terminal: leave it usable."""
        if self.hung_up or self.driver is None:
            return
        import termios

        attrs = getattr(self.driver, "attrs_before", None)
        with contextlib.suppress(Exception):
            if attrs is not None:
                termios.tcsetattr(self.driver.fileno, termios.TCSANOW, attrs)
        with contextlib.suppress(OSError):
            fd = sys.__stderr__.fileno() if sys.__stderr__ else 2
            os.set_blocking(fd, False)  # a stalled terminal must not hold the exit
            os.write(fd, b"\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1003l\x1b[?1006l\x1b[?2004l")
