"""Importing torch, torchvision and the trainer without the cyclic garbage collector.

Those imports create about half a million objects; the collector runs dozens of times while
they load and finds almost nothing to free (a few thousand cycles), which is about an eighth
of a training process's start-up CPU (docs/testing.md has the figures). Once they are loaded,
``gc.freeze`` moves them out of the collector's way, so the full collections that come later,
during training, do not walk them again. Torch-free: a process that never imports torch never
enters this block."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_done = False


@contextlib.contextmanager
def heavy_imports() -> Iterator[None]:
    """The collector paused for the block's imports; what they loaded frozen after it. Once per
    process: a later block (a test's process calling a trainer again) imports nothing new, and
    freezing its garbage would only keep it."""
    global _done
    if _done:
        yield
        return
    _done = True
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
