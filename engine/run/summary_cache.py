"""A per-user cache of what listing runs reads from each run: its summary.json and label.json,
each kept with the file's signature (modification time, size, inode).

Listing 10,000 runs then costs two ``stat`` calls a run instead of opening and parsing two
files. A cached entry is used only while its file's signature is unchanged; a file changed in
the last few seconds is never cached (a file rewritten twice within the file system's clock
tick could keep its signature: the "racy" case git's index guards against the same way).
The cache is only ever a copy: lost, damaged or unwritable, runs are read from their folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.run.config import default_cache_dir

SUMMARIES, LABELS = "summaries", "labels"
"""The two caches, each a file of its own: finding a run by its --name loads only the small one."""
VERSION = 1
CONFIG_DELTA = "config-delta"
#: A file younger than this (seconds) may still change within the clock tick it was written in.
SETTLED_S = 2.0

Signature = list[int]


def cache_path(kind: str) -> Path:
    return default_cache_dir() / f"run-{kind}.json"


def signature(path: str) -> Signature | None:
    """The file's (mtime in ns, size, inode); None when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


class SummaryCache:
    """Parsed JSON files by path (``.../run/summary.json``): :meth:`read_json` parses a file only
    when its signature changed; :meth:`save` writes the cache back once, if anything changed
    (atomically, never raising), keeping only the files read since when ``prune``."""

    def __init__(self, kind: str = SUMMARIES) -> None:
        self.path = cache_path(kind)
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        self.seen: set[str] = set()
        self.base: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            data = json.loads(self.path.read_bytes())
            if data.get("version") == VERSION and isinstance(data.get("files"), dict):
                self.entries, self.base = data["files"], dict(data["base"])

    def read_json(self, file: str | Path) -> Any:
        """``file`` parsed as JSON: from the cache while the file is unchanged. Raises as reading
        and parsing it would (OSError, ValueError, RecursionError)."""
        key = os.path.abspath(file)  # one per-user cache for runs under every folder
        self.seen.add(key)
        sig = signature(key)
        entry = self.entries.get(key)
        if sig is not None and isinstance(entry, list) and len(entry) == 2 and entry[0] == sig:
            with contextlib.suppress(ValueError, TypeError, AttributeError):  # a damaged entry: read the file
                return self._unpacked(entry[1])
        with open(key, "rb") as f:
            data = json.loads(f.read())
        if sig is not None and time.time_ns() - sig[0] >= SETTLED_S * 1e9:
            self.entries[key] = [sig, self._packed(data)]
            self.changed = True
        elif self.entries.pop(key, None) is not None:
            self.changed = True
        return data

    # A summary's config (about 50 keys, most the same in every run) is kept as its difference
    # from one shared config: a cache of 10,000 runs is then a few MB, not 14, and parses in a
    # fraction of the time.
    def _packed(self, data: Any) -> Any:
        if not (isinstance(data, dict) and isinstance(config := data.get("config"), dict)):
            return data
        if not self.base:
            self.base = dict(config)
        changed = {k: v for k, v in config.items() if k not in self.base or self.base[k] != v}
        gone = [k for k in self.base if k not in config]
        return {**data, "config": None, CONFIG_DELTA: [changed, gone]}

    def _unpacked(self, data: Any) -> Any:
        if not isinstance(data, dict) or CONFIG_DELTA not in data:
            return data
        changed, gone = data[CONFIG_DELTA]
        config = self.base.copy()  # (copies and pops: 10,000 runs, a tenth of a second less than comprehensions)
        for key in gone:
            config.pop(key, None)
        config.update(changed)
        unpacked = data.copy()
        del unpacked[CONFIG_DELTA]
        unpacked["config"] = config
        return unpacked

    def save(self, *, prune: bool = False) -> None:
        """Write the cache back if it changed; with ``prune`` (after a whole listing), only the files read."""
        if prune and len(self.seen) < len(self.entries):
            self.entries = {k: v for k, v in self.entries.items() if k in self.seen}
            self.changed = True
        if not self.changed:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:  # no fsync: a cache lost to a crash is rebuilt
                    json.dump({"version": VERSION, "base": self.base, "files": self.entries}, f, separators=(",", ":"))
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        self.changed = False
