"""How a user likes the dashboard to look (loss axis, smoothing, which plots), kept across
sessions and attaches in ``$XDG_STATE_HOME/cifar-tui/view.json``. Never fails the app: a
missing or damaged file means the defaults, a file that cannot be written is skipped."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.run.fileio import atomic_write_json
from engine.run.index import state_dir

SMOOTHING = (0.0, 0.6, 0.9, 0.99)
"""Smoothing weights the ``m`` key cycles through (TensorBoard's meaning: weight per training step)."""


@dataclass
class ViewSettings:
    log_scale: bool = False
    smoothing: float = 0.9
    plot_view: int = 0  # an index into the dashboard's PLOT_VIEWS


def _path() -> Path:
    return state_dir() / "view.json"


def load_view() -> ViewSettings:
    try:
        data = json.loads(_path().read_bytes())
        view = ViewSettings(bool(data["log_scale"]), float(data["smoothing"]), int(data["plot_view"]))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError):
        return ViewSettings()
    return view if view.smoothing in SMOOTHING and view.plot_view >= 0 else ViewSettings()


def save_view(view: ViewSettings) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        _path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(_path(), asdict(view))
