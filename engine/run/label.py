"""What a person calls a run: its name, tags and notes, and whether it is archived.

Kept in the run directory's ``label.json``, apart from config.json (what the run trains with,
never edited) so a label can change at any time, while the run trains or long after:
``--name``/``--tag``/``--notes`` at the start, ``cifar-tui label RUN`` later.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.run.fileio import atomic_write_json

LABEL = "label.json"
MAX_NAME, MAX_TAG, MAX_NOTES = 80, 40, 2000
_TAG = re.compile(r"^[^\s,]+$")


@dataclass
class Label:
    name: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    archived: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_name(name: str) -> str:
    """A run name as given, stripped; ValueError (one line) when unusable."""
    name = name.strip()
    if len(name) > MAX_NAME or any(not c.isprintable() for c in name):
        raise ValueError(f"a run name is at most {MAX_NAME} printable characters")
    return name


def check_tags(text: str) -> list[str]:
    """Tags from ``a,b c`` (commas or spaces), each once; ValueError when one is unusable."""
    tags: list[str] = []
    for tag in re.split(r"[,\s]+", text.strip()):
        if not tag:
            continue
        if len(tag) > MAX_TAG or not _TAG.match(tag) or not tag.isprintable():
            raise ValueError(f"tag {tag[:MAX_TAG]!r}: at most {MAX_TAG} printable characters, no spaces or commas")
        if tag not in tags:
            tags.append(tag)
    return tags


def check_notes(notes: str) -> str:
    if len(notes) > MAX_NOTES:
        raise ValueError(f"notes are at most {MAX_NOTES} characters")
    return notes.strip()


def read_label(run_dir: Path, read_json: Callable[[str], Any] | None = None) -> Label:
    """The run's label; an empty one when it has none or it cannot be read (a label never hides a
    run). ``read_json``: how to read the file (a cache's), by default read and parsed here."""
    try:
        file = os.path.join(run_dir, LABEL)
        return label_from(read_json(file) if read_json else json.loads(Path(file).read_bytes()))
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return Label()


def label_from(data: Any) -> Label:
    """A label from label.json's parsed content (AttributeError/TypeError when it is not one)."""
    return Label(
        name=str(data.get("name", "")),
        tags=[str(t) for t in data.get("tags", []) if isinstance(t, str)],
        notes=str(data.get("notes", "")),
        archived=bool(data.get("archived", False)),
    )


def run_title(run_dir: Path) -> str:
    """What a person calls the run: its --name, else its folder's name."""
    return read_label(run_dir).name or run_dir.resolve().name


def write_label(run_dir: Path, label: Label) -> None:
    """Replace the label atomically (OSError when the folder refuses), and record the run's name
    in the per-user index: a --name then resolves without reading every run's label."""
    from engine.run.index import remember

    atomic_write_json(run_dir / LABEL, label.to_dict())
    remember(run_dir, label.name)
