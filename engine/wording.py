"""Wording shared by the headless lines and the dashboard (no torch, no textual)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def plural(n: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def weights_phrase(weights: str) -> str:
    """How the model's starting weights read to a person."""
    if weights == "none":
        return "from scratch"
    if weights == "imagenet":
        return "ImageNet weights"
    return f"weights from {Path(weights).name}"


def model_phrase(config: dict) -> str:
    """'resnet18 (ImageNet weights, imagenet stem)'."""
    return f"{config['arch']} ({weights_phrase(str(config['weights']))}, {config['stem']} stem)"


def duration(seconds: float | None) -> str:
    """'4m05s', '1h02m03s'; '--' when unknown. The one duration format of the CLI and the dashboard."""
    if seconds is None:
        return "--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class CountProgress:
    """A long count made visible: '<verb> 12,000/60,000 <noun>, 750/s, ETA 1m04s', at most every
    ``every_s`` seconds, through ``report`` (a status event, a notify callback)."""

    def __init__(self, verb: str, noun: str, total: int, report: Callable[[str], None], every_s: float = 2.0) -> None:
        self.verb, self.noun, self.total, self.report, self.every_s = verb, noun, total, report, every_s
        self.done = 0
        self.began = self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.began, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        self.report(f"{self.verb} {done:,}/{self.total:,} {self.noun}, {rate:,.0f}/s, ETA {duration(eta)}")
