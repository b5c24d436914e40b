"""The run directory: config.json, events.jsonl (one JSON object per event), checkpoints/;
what makes a folder a run, who owns it (its lock), and reading its events back. The writer
that appends the events is engine/run/run_writer.py."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path

from engine.run import events as ev
from engine.run import wire
from engine.run.config import TrainConfig
from engine.run.errors import RunDirError
from engine.run.fileio import atomic_write_text
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
