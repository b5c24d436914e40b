"""The per-user index of run directories, so that runs are found from any folder.

After an SSH reconnect a user lands in ``~``, not in the folder they started the run from.
Every run directory a trainer opens is recorded here (its absolute path, one JSON line each)
in ``$XDG_STATE_HOME/cifar-tui/runs.jsonl`` (default ``~/.local/state/cifar-tui/runs.jsonl``).
``attach``, ``runs``, ``serve``, the runs screen and the run commands read it together with
``./runs``. Folders that are gone or no longer hold a run are skipped on reading, and
dropped the next time the index is rewritten (a delete rewrites it).

The index is a convenience: failing to write it never fails a run.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from engine.run.fileio import atomic_write_text

INDEX_NAME = "runs.jsonl"


def state_dir() -> Path:
    """The user's cifar-tui state folder (XDG): the run index and the dashboard's view settings."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cifar-tui"


def index_path() -> Path:
    return state_dir() / INDEX_NAME


def remember(run_dir: Path, name: str | None = None) -> None:
    """Record ``run_dir`` (one appended line: concurrent trainers never tear each other's); with
    ``name``, the run's --name as its label now says (written with every label)."""
    with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: no home folder to put it in
        path = index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"path": str(run_dir.resolve()), **({"name": name} if name is not None else {})}
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def resolved(path: Path) -> Path | None:
    """``path`` made absolute with its links followed; None for a symlink loop or an unreadable path."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return None


def indexed() -> list[Path]:
    """The recorded run directories, each once, in the order they were first recorded."""
    return [Path(p) for p in indexed_paths()]


def indexed_paths() -> list[str]:
    """:func:`indexed` as strings (no Path made: 10,000 runs are listed often)."""
    return list(dict.fromkeys(e["path"] for e in _entries()))


def named(name: str) -> list[str]:
    """The recorded runs whose --name was ``name`` when their label was last written here."""
    latest: dict[str, str] = {}
    for e in _entries():
        if isinstance(e.get("name"), str):
            latest[e["path"]] = e["name"]
    return [path for path, last in latest.items() if last == name]


def _entries() -> list[dict[str, str]]:
    """The index's lines, in order: each a dict with a non-empty ``path`` (and maybe ``name``)."""
    try:
        lines = index_path().read_bytes().splitlines()
    except (OSError, RuntimeError):
        return []
    with contextlib.suppress(ValueError, RecursionError):  # every line whole (the usual case): parsed at once
        entries = json.loads(b"[" + b",".join(line for line in lines if line.strip()) + b"]")
        if all(isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"] for e in entries):
            return entries
    found = []
    for line in lines:
        # A damaged line is skipped, whatever the damage (RecursionError: JSON nested too deep).
        with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and entry["path"]:
                found.append(entry)
    return found


def forget(run_dir: Path) -> None:
    """Drop ``run_dir`` from the index (after a delete), and every entry whose folder is gone."""
    with contextlib.suppress(OSError, RuntimeError):
        gone = resolved(run_dir)
        names = {e["path"]: e["name"] for e in _entries() if isinstance(e.get("name"), str)}
        keep = [p for p in indexed() if p != gone and p.is_dir() and resolved(p) is not None]
        atomic_write_text(index_path(), "".join(
            json.dumps({"path": str(p), **({"name": names[str(p)]} if str(p) in names else {})}) + "\n"
            for p in keep))  # fmt: skip
