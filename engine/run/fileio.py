"""Crash-safe file writes: temporary file in the same folder, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` via ``write(fileobj)`` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through :func:`atomic_write`. torch reports a failed write (disk full) as a
    RuntimeError from its zip writer; it is raised here as the OSError it is."""
    import torch

    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except RuntimeError as exc:
        raise write_error(path, exc) from exc


def free_bytes(folder: Path) -> int:
    """Free bytes on ``folder``'s file system; -1 when it cannot be read."""
    import shutil

    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def write_error(path: Path, exc: BaseException) -> OSError:
    """An OSError for a failed write that says why when the file system can tell (disk full)."""
    import errno

    free = free_bytes(path.parent)
    if 0 <= free < 64 * 1024 * 1024:
        return OSError(errno.ENOSPC, f"No space left on device ({free // 1024} KB free in {path.parent})")
    return OSError(errno.EIO, f"write failed: {str(exc).splitlines()[0][:200]}")


def clear_torn_writes(folder: Path) -> list[Path]:
    """Remove what a write killed part-way left in ``folder``: the temporary files of
    :func:`atomic_write` (``.NAME.XXXX.tmp``), never a file a reader takes. Only for a folder
    nothing is writing to now (a live writer's temporary file is its write under way)."""
    gone = []
    try:
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
            gone.append(stale)
    except OSError:  # a folder we cannot list or clean: the files stay, nothing else is affected
        pass
    return gone
