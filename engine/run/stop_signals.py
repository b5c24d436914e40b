"""The signals that stop a run, and the rule that only a training process acts on them.

A stop signal may reach every process of a group at once (``kill -TERM -- -PGID``, systemd's
default stop, ``timeout``, torchrun ending its ranks, Ctrl-C in a terminal). The training
process saves a checkpoint and stops at the next batch; its helper processes (DataLoader
workers) must not die of the same signal first, or the training process loses its data
mid-epoch and cannot save. So helpers are started with these signals blocked and ignore them
from their first instruction on: the training process speaks for them, and they end with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


Handler = Callable[[int, FrameType | None], None]


@contextlib.contextmanager
def handled(handler: Handler) -> Iterator[None]:
    """``handler`` for every stop signal while the block runs; the previous handlers after."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Block the stop signals in this thread while helpers are started (they inherit the mask,
    so none can arrive before :func:`ignore_in_helper` runs); a signal that came meanwhile is
    delivered to this process as the block is lifted."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_in_helper(_worker_id: int = 0, parent: int = 0) -> None:
    """A helper process's first step (a DataLoader ``worker_init_fn``, with ``parent`` the training
    process's pid): ignore the stop signals, dropping any that came while they were blocked, then
    unblock them; and end the moment the training process ends, however it ends (on Linux), so a
    helper never outlives it or reports errors of its own about a parent that is gone."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if sys.platform.startswith("linux") and parent:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # it ended before the line above took effect
            os._exit(0)


def helper_init(parent: int) -> Callable[[int], None]:
    """The ``worker_init_fn`` for helpers of the process ``parent`` (picklable)."""
    return functools.partial(ignore_in_helper, parent=parent)
