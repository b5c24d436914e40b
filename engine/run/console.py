"""stdout and stderr that never end a run.

A line printed for a person is never worth the run: ``cifar-tui --headless | head``, a log file
on a full disk, a closed terminal or an SSH session gone all make a write fail, and Python
raises (BrokenPipeError, OSError: No space left on device) from whatever ``print`` was running,
often deep inside training. :func:`install` replaces ``sys.stdout`` and ``sys.stderr`` with
:class:`Console` streams that write straight to the file descriptor (no buffer left to fail
again at exit), drop a line that cannot be written, and tell their listeners once per stream;
the trainer notes it in the run's events and training goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

Listener = Callable[[str, str], None]  # (stream name, why): once per stream, on its first failed write


class Console:
    """A text stream over a file descriptor whose writes never raise.

    Characters the encoding cannot show are escaped (a file name that is not UTF-8 still
    prints). A failed write drops that text; later writes are tried again (a full disk may get
    room), and a closed pipe's writes go to /dev/null from then on."""

    def __init__(self, name: str, original: TextIO) -> None:
        self.name = name
        self.original = original
        self._fd = original.fileno()
        self.encoding = getattr(original, "encoding", None) or "utf-8"
        self.errors = "backslashreplace"
        self.failed = ""  # why the first write failed ("" while none has)
        self.failed_errno = 0
        self.dropped = 0  # writes dropped
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        if self.failed:  # it failed before anyone listened: say so now
            listener(self.name, self.failed)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def write(self, text: str) -> int:
        data = text.encode(self.encoding, self.errors)
        with self._lock:
            try:
                self._write_all(data)
                return len(text)
            except OSError as exc:
                first = self._failed(exc)
        if first:  # outside the lock: a listener may print (into this stream) as it takes note
            for listener in list(self._listeners):
                with contextlib.suppress(Exception):
                    listener(self.name, self.failed)
        return len(text)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:  # a non-blocking descriptor that is full: wait for room, briefly
                if not select.select([], [self._fd], [], 5.0)[1]:
                    raise OSError(errno.EAGAIN, "the reader is not reading") from None

    def _failed(self, exc: OSError) -> bool:
        """Drop the text; True on this stream's first failure."""
        self.dropped += 1
        if exc.errno in (errno.EPIPE, errno.EBADF):  # nothing will ever read it again
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self._fd)
                os.close(null)
        if self.failed:
            return False
        self.failed, self.failed_errno = exc.strerror or str(exc), exc.errno or 0
        return True

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is buffered."""

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def reconfigure(self, **_kwargs: Any) -> None:
        """Already tolerant: text the encoding cannot show is escaped."""

    @property
    def closed(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # buffer, mode, line_buffering...: the original's
        return getattr(self.original, name)


def install() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` :class:`Console` streams (once each)."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, Console) or current is None:
            continue
        try:
            with contextlib.suppress(OSError, ValueError):
                current.flush()
            setattr(sys, name, Console(name, current))
        except (AttributeError, OSError, ValueError):  # no descriptor (a test's capture): leave it
            continue


def on_failure(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` when an installed stream's write first fails; returns its removal."""
    consoles = [s for s in (sys.stdout, sys.stderr) if isinstance(s, Console)]
    for console in consoles:
        console.add_listener(listener)

    def remove() -> None:
        for console in consoles:
            console.remove_listener(listener)

    return remove


def failure_note(name: str, why: str) -> str:
    """What the run's events say when one of its output streams fails."""
    return f"{name} cannot be written ({why}); training goes on, and its lines are in events.jsonl"


def lost_output() -> str:
    """Why stdout lost output a reader wanted ("" if none was lost). A closed pipe is not a loss:
    the reader had what it wanted (``cifar-tui runs | head -1``)."""
    out = sys.stdout
    if isinstance(out, Console) and out.failed and out.failed_errno != errno.EPIPE:
        return out.failed
    return ""
