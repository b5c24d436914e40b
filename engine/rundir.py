"""The run directory: config.json, events.jsonl (one JSON object per event), checkpoints/.

Events are appended and flushed as they happen so a run can be followed or
replayed without the process that made it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import IO

from engine import events as ev
from engine.config import TrainConfig
from engine.errors import RunDirError
from engine.fileio import atomic_write_json

EVENTS = "events.jsonl"
CONFIG = "config.json"
CHECKPOINTS = "checkpoints"


def _slug(text: str) -> str:
    """A safe single path component: never a separator, never '..'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name).strip(".-")
    return name[:40] or "data"


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(cfg.runs_root) / f"{stamp}-{_slug(cfg.recipe)}-{_slug(cfg.data)}"


def holds_run(path: Path) -> bool:
    return (path / EVENTS).exists() or (path / CONFIG).exists()


def check_run_dir(path: Path, *, resuming_here: bool, overwrite: bool) -> None:
    """Refuse a run directory that already holds a run, unless resuming into it or told to overwrite."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path} exists and is not a folder")
    if holds_run(path) and not (resuming_here or overwrite):
        raise RunDirError(
            f"run directory {path} already holds a run; use --resume {path / CHECKPOINTS / 'last.pt'} "
            "to continue it, --overwrite to replace it, or another --run-dir"
        )


def checkpoint_run_dir(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to (…/RUN/checkpoints/x.pt -> …/RUN)."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == CHECKPOINTS else parent


class RunDirSink:
    """Event sink that writes events.jsonl. Events before ``RunStarted`` are held in memory,
    so a run that fails on bad input leaves nothing on disk."""

    def __init__(self, path: Path, *, overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self._pending: list[ev.Event] = []
        self._file: IO[str] | None = None

    def open(self, config: TrainConfig) -> None:
        """Create the folder and write config.json; flush held events."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if self.overwrite and not config.resume:
                for name in (EVENTS, CONFIG):
                    (self.path / name).unlink(missing_ok=True)
                shutil.rmtree(self.path / CHECKPOINTS, ignore_errors=True)
            atomic_write_json(self.path / CONFIG, config.to_dict())
            self._file = open(self.path / EVENTS, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        except OSError as exc:
            raise RunDirError(f"cannot write run directory {self.path}: {exc.strerror or exc}") from exc
        for event in self._pending:
            self._write(event)
        self._pending.clear()

    def _write(self, event: ev.Event) -> None:
        assert self._file is not None
        self._file.write(json.dumps(ev.to_dict(event), separators=(",", ":")) + "\n")
        self._file.flush()

    def __call__(self, event: ev.Event) -> None:
        if self._file is None:
            self._pending.append(event)
        else:
            self._write(event)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: Path) -> list[ev.Event]:
    """Events from a run directory's events.jsonl; a torn last line and unknown kinds are skipped."""
    out: list[ev.Event] = []
    try:
        lines = (path / EVENTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        event = ev.from_json_line(line)
        if event is not None:
            out.append(event)
    return out
