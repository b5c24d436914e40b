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
import signal
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


def ignore_in_helper(_worker_id: int = 0) -> None:
    """A helper process's first step (a DataLoader ``worker_init_fn``): ignore the stop signals,
    dropping any that came while they were blocked, then unblock them."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
