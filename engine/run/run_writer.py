"""The run directory's writer: every event appended to events.jsonl and flushed as it happens
(so a run can be followed or replayed without the process that made it), the folder created
and owned (its lock) first, and a write that fails said once, as an event, never raised."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engine.run import events as ev
from engine.run import wire
from engine.run.config import TrainConfig
from engine.run.errors import RunDirError
from engine.run.fileio import atomic_write_json
from engine.run.index import remember
from engine.run.label import LABEL
from engine.run.rundir import (
    CHECKPOINTS,
    CONFIG,
    EVENTS,
    SUMMARY,
    RunDirLock,
    check_run_dir,
    label_run,
    live_owner,
    write_mark,
)


class RunDirSink:
    """Event sink that writes events.jsonl. Nothing is written before :meth:`open` (the trainer
    opens it once data and model are ready, so a run that fails on bad input leaves nothing on
    disk); events sent before that are held and written first as it opens.

    Once open it never raises: a failed write (disk full, I/O error) is cut back to the last
    whole line, so the file stays valid JSON lines, and ``on_error`` hears about it once (the
    trainer sends that to the live dashboard). Later events are tried again; when the disk has
    room again the log goes on and ``on_error`` hears how many events are missing."""

    def __init__(self, path: Path, *, overwrite: bool = False, resuming_here: bool = False, unique: bool = False,
                 on_error: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.path = path
        self.overwrite = overwrite
        self.resuming_here = resuming_here
        self.unique = unique  # a default name: never an existing folder, add -2, -3... instead
        self.lock = RunDirLock(path)
        self.on_error = on_error or (lambda _message: None)
        self._pending: list[ev.Event] = []
        self._file: IO[bytes] | None = None
        self._good_size = 0
        self._opened = False
        self.lost = 0

    def open(self, config: TrainConfig) -> None:
        """Create the folder, take ownership of it, write config.json; flush held events."""
        try:
            self._create()
            self.lock = RunDirLock(self.path)  # the folder's final name (a default one may have got a suffix)
            if not self.lock.acquire():
                raise RunDirError(
                    f"run directory {self.path} is in use by a live trainer (pid {live_owner(self.path)})"
                )
            if not self.unique:  # it may have changed hands since the first check
                check_run_dir(self.path, resuming_here=self.resuming_here, overwrite=self.overwrite, owned=True)
            if self.overwrite and not config.resume:
                for name in (EVENTS, CONFIG, SUMMARY, LABEL):
                    (self.path / name).unlink(missing_ok=True)
                shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
            write_mark(self.path)
            atomic_write_json(self.path / CONFIG, config.to_dict())
            label_run(self.path, config)
            remember(self.path)
            self._file = self._open_events()
            self._good_size = self._file.seek(0, os.SEEK_END)
            self._opened = True
        except OSError as exc:
            self.lock.release()
            raise RunDirError(f"cannot write run directory {self.path}: {exc.strerror or exc}") from exc
        except RunDirError:
            self.lock.release()
            raise
        for event in self._pending:
            self._write(event)
        self._pending.clear()

    def _write(self, event: ev.Event) -> None:
        line = (wire.to_json_line(event) + "\n").encode("utf-8")
        try:
            if self._file is None:  # closed after a failed write: try again
                self._file = self._open_events()
            written = self._file.write(line)
            if written != len(line):  # a short write: the disk filled up in the middle of the line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except (OSError, ValueError) as exc:
            self._write_failed(exc)
            return
        self._good_size += len(line)
        if self.lost:
            self.on_error(f"{EVENTS} is written again; {self.lost} event(s) are missing from it")
            self.lost = 0

    def _create(self) -> None:
        if not self.unique:
            self.path.mkdir(parents=True, exist_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        base = self.path
        for n in range(2, 1000):  # two runs started in the same second get different folders
            try:
                self.path.mkdir()
            except FileExistsError:
                self.path = base.with_name(f"{base.name}-{n}")
                continue
            return
        raise RunDirError(f"cannot find a free run directory name next to {base}")

    def _open_events(self) -> IO[bytes]:
        # Unbuffered: one write() per line, so a failure leaves nothing half-sent in a buffer.
        return open(self.path / EVENTS, "ab", buffering=0)

    def _write_failed(self, exc: OSError | ValueError) -> None:
        first = not self.lost
        self.lost += 1
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):  # cut the torn line: the file stays valid
                os.ftruncate(self._file.fileno(), self._good_size)
            with contextlib.suppress(OSError, ValueError):
                self._file.close()
            self._file = None
        if first:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.on_error(f"cannot write {self.path / EVENTS} ({why}); training goes on and the dashboard "
                          "still shows it, but events are missing from the file until there is room")  # fmt: skip

    def __call__(self, event: ev.Event) -> None:
        if not self._opened:
            self._pending.append(event)
        else:
            self._write(event)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self._opened = False
        self.lock.release()
