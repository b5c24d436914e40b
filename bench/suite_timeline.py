"""A pytest plugin for bench/suite_cost.py: one JSON line per test, appended to the file that
``CIFAR_TUI_SUITE_TIMELINE`` names, with the test's wall time, the CPU-seconds its worker spent
on it and those of the child processes the worker reaped while it ran (a process reaped by
another, such as a torchrun rank or a forked sweep trial, counts where its reaper was reaped).

Loaded with ``-p bench.suite_timeline``; it does nothing when the variable is unset."""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Generator
from typing import Any

import pytest

TIMELINE = "CIFAR_TUI_SUITE_TIMELINE"


def _cpu(who: int) -> float:
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, None, None]:
    path = os.environ.get(TIMELINE)
    t0, own0, kids0 = time.monotonic(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    yield
    if not path:
        return
    line = {"id": item.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "wall": round(time.monotonic() - t0, 3), "self": round(_cpu(resource.RUSAGE_SELF) - own0, 3),
            "kids": round(_cpu(resource.RUSAGE_CHILDREN) - kids0, 3)}  # fmt: skip
    with open(path, "a") as f:  # one short write per line: the workers' lines never interleave
        f.write(json.dumps(line) + "\n")
