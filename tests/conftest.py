"""Shared fixtures: isolated caches, the shared real-image data, tiny configs."""

from __future__ import annotations

import html
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MINI = SHARED_DATA / "cifar10-mini"
sys.path.insert(0, str(ROOT))

from engine.run import events as ev  # noqa: E402
from engine.run.config import TrainConfig, from_recipe  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    """Temporary files of the suite and of every process it starts (torchrun's logs, control sockets,
    the benchmark's smoke run) go under pytest's own folder, removed after a passing session."""
    tmp = session.config._tmp_path_factory.getbasetemp() / "tmp"  # type: ignore[attr-defined]
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # forget a temp dir already looked up


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's caches; never download (TORCH_HOME is empty)."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture
def mini_data() -> Path:
    if not MINI.is_dir():
        pytest.skip(f"{MINI} not present")
    return MINI


def tiny_config(tmp_path: Path, **overrides: object) -> TrainConfig:
    """Demo data, a few hundred images, ResNet-18 from scratch: about a second an epoch on 2 CPU cores."""
    values: dict[str, object] = {
        "data": "demo",
        "weights": "none",
        "train_limit": 256,
        "test_limit": 100,
        "batch_size": 32,
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


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def project_env() -> dict[str, str]:
    """Environment for running the real command in a subprocess from the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def wait_until(
    pilot: object, cond: Callable[[], bool], timeout: float = 60.0, why: Callable[[], object] = lambda: ""
) -> None:
    """Wait on the app for ``cond`` (the timeout is a hang guard, not a timing assertion);
    ``why`` says what was still missing when it gives up."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    app = pilot.app  # type: ignore[attr-defined]
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in time {why()}")
        if not app.is_running:  # pausing a dead app would wait forever
            raise AssertionError("the app stopped before the condition was met")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def settle(pilot: object, events: int = 0, timeout: float = 120.0) -> None:
    """Wait until the app has taken ``events`` events and every pane shows them (then one frame)."""
    app = pilot.app  # type: ignore[attr-defined]
    await wait_until(
        pilot,
        lambda: app.events_seen >= events and app.run_state.started is not None and app.is_settled(),
        timeout,
        why=lambda: (app.events_seen, events, app.run_state.started is not None, app.unsettled()),
    )
    await pilot.pause()  # type: ignore[attr-defined]


def screen_text(app: Any) -> str:
    """What a Textual app's screen shows now, as plain text (from its SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def started_by_the_suite() -> list[Any]:
    """Every live process this suite started, however far it went (a detached trainer, a rank in
    its own session, a served dashboard whose server died): they all inherit the suite's TMPDIR."""
    import psutil

    mine = os.environ.get("TMPDIR", "")
    found = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if mine and process.environ().get("TMPDIR") == mine:
                found.append(process)
        except (psutil.Error, OSError):  # gone, or not ours to read
            continue
    return found


LEFT_RUNNING: list[str] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process the suite started outlives it: whatever is still running a while after the last
    test (a trainer told to stop saves first) is listed, killed, and fails the session."""
    import time

    import psutil

    deadline = time.monotonic() + 60
    while (left := started_by_the_suite()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for process in left:
        try:
            LEFT_RUNNING.append(f"pid {process.pid}: {' '.join(process.cmdline())[:160]}")
            process.kill()
        except psutil.Error:
            continue
    if LEFT_RUNNING and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int) -> None:
    for line in LEFT_RUNNING:
        terminalreporter.write_line(f"left running by the suite (killed): {line}", red=True)
    _disk_note(terminalreporter, exitstatus)


def _disk_note(terminalreporter: Any, exitstatus: int) -> None:
    """After failures, say when the disk the tests write to is nearly full: checkpoint writes then fail
    (the trainer logs "checkpoint NOT saved" and keeps training), which reads like a code fault."""
    import shutil

    if exitstatus == 0:  # (a passing session's folder is already gone)
        return
    base = terminalreporter.config._tmp_path_factory.getbasetemp()
    free = shutil.disk_usage(base).free
    if free < 2 * 1024**3:
        terminalreporter.write_line(f"note: only {free / 1024**2:.0f} MB free on the disk of {base}", yellow=True)


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
