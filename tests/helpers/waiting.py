"""The one way tests wait: on a condition, never on the clock. The timeout is a hang guard,
never a timing assertion; the message says what was still missing when it gave up.

``wait_until`` blocks the test's own thread (real processes, a pty, files); ``app_until``
waits inside a pilot test, letting the app's loop run meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

HANG_GUARD_S = 180.0


def wait_until(cond: Callable[[], bool], timeout: float = HANG_GUARD_S, what: str = "a condition",
               process: subprocess.Popen[Any] | None = None) -> None:  # fmt: skip
    """Block until ``cond()``; with ``process``, fail at once (with its output) if it ends first."""
    deadline = time.monotonic() + timeout
    while not cond():
        if process is not None and process.poll() is not None:
            out = process.communicate()
            raise AssertionError(f"the process ended (code {process.returncode}) before {what}: {out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


async def app_until(pilot: Any, cond: Callable[[], bool], timeout: float = 60.0,
                    why: Callable[[], object] = lambda: "") -> None:  # fmt: skip
    """Wait on the app for ``cond``; ``why`` says what was still missing when it gives up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    app = pilot.app
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in time {why()}")
        if not app.is_running:  # pausing a dead app would wait forever
            raise AssertionError("the app stopped before the condition was met")
        await pilot.pause(0.05)


async def settle(pilot: Any, events: int = 0, timeout: float = 120.0) -> None:
    """Wait until the app has taken ``events`` events and every pane shows them (then one frame)."""
    app = pilot.app
    await app_until(
        pilot,
        lambda: app.events_seen >= events and app.run_state.started is not None and app.is_settled(),
        timeout,
        why=lambda: (app.events_seen, events, app.run_state.started is not None, app.unsettled()),
    )
    await pilot.pause()
