"""What many tests use: the checkout's root, tiny configs, an event recorder, the screen as text,
a process's children."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.run import events as ev
from engine.run.config import TrainConfig, from_recipe

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
MINI = SHARED_DATA / "cifar10-mini"


def tiny_config(tmp_path: Path, **overrides: object) -> TrainConfig:
    """Demo data, 128 images in 8 batches of 16, ResNet-18 from scratch: about a second an epoch on
    one CPU core. (Eight steps an epoch is what many tests count on; small batches keep them cheap.)"""
    values: dict[str, object] = {
        "data": "demo",
        "weights": "none",
        "train_limit": 128,
        "test_limit": 100,
        "batch_size": 16,
        "epochs": 1,
        "lr": 0.01,
        "loader": "tensor",
        "progress_hz": 1000.0,
        "log_every": 4,
        "run_dir": str(tmp_path / "run"),
        "device": "cpu",
    }
    values.update(overrides)
    return from_recipe(str(values.pop("recipe", "tutorial")), **values)  # type: ignore[arg-type]


class Recorder:
    """A thread-safe event sink that lets a test wait for an event."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: ev.Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: type[ev.Event]) -> list:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, test: Callable[[ev.Event], bool], timeout: float = 60.0) -> ev.Event:
        with self._cond:
            seen = 0
            ok = self._cond.wait_for(lambda: any(test(e) for e in self.events), timeout)
            if not ok:
                raise AssertionError(f"event not seen in {timeout}s; got {[e.kind for e in self.events][-20:]}")
            for e in self.events[seen:]:
                if test(e):
                    return e
        raise AssertionError("unreachable")


def screen_text(app: Any) -> str:
    """What a Textual app's screen shows now, as plain text (from its SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists (a zombie counts until its parent reaps it)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def live_children(pid: int, needle: str) -> list[Any]:
    """``pid``'s descendants (psutil.Process) whose command line holds ``needle``, those that have
    exited left out: one that became a zombie between the listing and the read has no command line."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if needle in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:  # ZombieProcess too
            pass
    return found
