"""The run directory: config.json, events.jsonl (one JSON object per event), checkpoints/.

Events are appended and flushed as they happen so a run can be followed or
replayed without the process that made it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from engine.run import events as ev
from engine.run import wire
from engine.run.config import TrainConfig
from engine.run.errors import RunDirError
from engine.run.fileio import atomic_write_json, atomic_write_text
from engine.run.index import remember
from engine.run.label import LABEL, check_name, check_notes, check_tags, read_label, write_label

EVENTS = "events.jsonl"
CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
LAST, BEST = "last.pt", "best.pt"  # in checkpoints/: the newest checkpoint, the best evaluated one
SUMMARY = "summary.json"  # kept by engine.run.summary: what the runs list shows without reading events
MARK = ".cifar-tui-run"  # written first into every run directory: what makes a folder a run
_MARK_TEXT = '{"format": "cifar-tui run directory", "version": 1}\n'
_CONFIG_KEYS = {"recipe", "arch", "epochs", "batch_size", "lr"}  # every config.json cifar-tui wrote has these


def slug(text: str) -> str:
    """A safe single path component: never a separator, never '..'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name).strip(".-")
    return name[:40] or "data"


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if cfg.name:
        return Path(cfg.runs_root) / f"{stamp}-{slug(cfg.name)}"
    return Path(cfg.runs_root) / f"{stamp}-{slug(cfg.recipe)}-{slug(cfg.data)}"


def holds_run(path: Path) -> bool:
    """Whether ``path`` is a cifar-tui run directory. Decided by content only cifar-tui writes,
    never by a file name a user's own folder may also have: the run mark, or (run directories
    written before the mark existed) a config.json with cifar-tui's fields or an events.jsonl
    whose first line is a cifar-tui event."""
    try:
        mark = path / MARK
        if mark.is_file():
            return _valid_mark(mark)
        return _cifar_tui_config(path / CONFIG) or _cifar_tui_events(path / EVENTS)
    except OSError:
        return False


def _json_object(path: Path) -> dict[str, object]:
    """The JSON object in the first megabyte of ``path``; {} for anything else (missing too)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(1_000_000))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid_mark(mark: Path) -> bool:
    return _json_object(mark).get("format") == "cifar-tui run directory"


def _cifar_tui_config(config: Path) -> bool:
    return _json_object(config).keys() >= _CONFIG_KEYS


def _cifar_tui_events(events: Path) -> bool:
    try:
        with open(events, "rb") as f:
            first = f.readline(1_000_000)
    except OSError:
        return False
    return wire.from_json_line(first) is not None


def write_mark(path: Path) -> None:
    """Mark ``path`` as a run directory (atomically: a torn mark would not count)."""
    if not (path / MARK).is_file():
        atomic_write_text(path / MARK, _MARK_TEXT)


def label_run(path: Path, cfg: TrainConfig) -> None:
    """Write what the run was called at its start (a resume's --name/--tags/--notes replace those parts)."""
    if not (cfg.name or cfg.tags or cfg.notes):
        return
    label = read_label(path)
    label.name = check_name(cfg.name) if cfg.name else label.name
    label.tags = check_tags(cfg.tags) if cfg.tags else label.tags
    label.notes = check_notes(cfg.notes) if cfg.notes else label.notes
    write_label(path, label)


def check_run_dir(path: Path, *, resuming_here: bool, overwrite: bool, owned: bool = False) -> None:
    """Refuse a run directory that already holds a run (unless resuming into it or told to
    overwrite), a folder of other files, and a run that a live trainer owns."""
    try:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run directory {path} exists and is not a folder")
        if holds_run(path):
            if not (resuming_here or overwrite):
                raise RunDirError(
                    f"run directory {path} already holds a run; use --resume {path / CHECKPOINTS / 'last.pt'} "
                    "to continue it, --overwrite to replace it, or another --run-dir"
                )
            owner = None if owned else live_owner(path)
            if owner is not None:
                raise RunDirError(f"run directory {path} is in use by a live trainer (pid {owner}); "
                                  "watch it with: cifar-tui attach " + str(path))  # fmt: skip
        elif path.is_dir() and any(p.name not in (RunDirLock.NAME, MARK, LABEL) for p in path.iterdir()):
            raise RunDirError(f"{path} is a folder of other files, not a run directory; give a new or empty --run-dir")
    except OSError as exc:
        raise RunDirError(f"cannot use run directory {path}: {exc.strerror or exc}") from exc


def checkpoint_run_dir(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint lies in (…/RUN/checkpoints/x.pt -> …/RUN, absolute), or
    None when it lies elsewhere (copied out of its run): a resume then gets a new run directory."""
    parent = checkpoint.resolve().parent
    if parent.name == CHECKPOINTS and holds_run(parent.parent):
        return parent.parent
    return None


def check_target(cfg: TrainConfig) -> bool:
    """Check the folder a run will write to (its --run-dir, else the resumed checkpoint's own run);
    True when it resumes into the checkpoint's own run. A new default folder needs no check:
    it is created under a name of its own."""
    own = checkpoint_run_dir(Path(cfg.resume)) if cfg.resume else None
    target = Path(cfg.run_dir) if cfg.run_dir else own
    if target is None:
        return False
    here = own is not None and target.resolve() == own
    check_run_dir(target, resuming_here=here, overwrite=cfg.overwrite)
    return here


class RunDirLock:
    """Exclusive ownership of a run directory by one live process: ``flock`` on ``.lock``,
    released by the kernel when the owner dies however it dies (kill -9 leaves nothing stuck)."""

    NAME = ".lock"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path / self.NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def live_owner(path: Path) -> int | None:
    """The pid of the live process that owns a run directory, or None."""
    lock = RunDirLock(path)
    try:
        if not (path / RunDirLock.NAME).exists():
            return None
        if lock.acquire():
            lock.release()
            return None
        text = (path / RunDirLock.NAME).read_text().strip()
        return int(text) if text.isdigit() else -1
    except OSError:
        return None


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


def read_events(path: Path) -> list[ev.Event]:
    """Events from a run directory's events.jsonl; a torn last line and unknown kinds are skipped."""
    out: list[ev.Event] = []
    try:
        lines = (path / EVENTS).read_bytes().splitlines()  # bytes: one bad line never hides the rest
    except (FileNotFoundError, NotADirectoryError):
        return out
    for line in lines:
        event = wire.from_json_line(line)
        if event is not None:
            out.append(event)
    return out
