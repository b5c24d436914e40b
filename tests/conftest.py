"""Shared fixtures: isolated caches, the shared real-image data, tiny configs."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.run.heavy_imports import heavy_imports  # noqa: E402
from tests.helpers.common import MINI, Recorder  # noqa: E402

SYSTEM = ROOT / "tests" / "system"


STAGES = ("system", "integration", "unit")
"""The suite's stages, each a folder and a marker (``pytest -m unit`` runs one): the slowest first."""


RAM_TMP = Path("/dev/shm")
RAM_TMP_ROOM = 4 * 1024**3
"""The suite's temporary files go to a RAM disk with this much room when it has one, TMPDIR unset."""


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One torch thread per worker and per process it starts: with a worker per core, torch's
        # own threads would only fight over the cores (its spinning workers waste them).
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    elif config.option.basetemp is None and "TMPDIR" not in os.environ and _has_room(RAM_TMP):
        # Every checkpoint is written with an fsync (90 MB: 0.5 s on this machine's disk, 0.05 s
        # on tmpfs); the suite writes about a hundred. Nothing here tests the disk itself (the
        # full-disk tests mount tmpfs folders of their own). The workers get their folders below.
        os.environ["TMPDIR"] = str(RAM_TMP)
        tempfile.tempdir = None


def _has_room(folder: Path) -> bool:
    try:
        return os.access(folder, os.W_OK) and shutil.disk_usage(folder).free >= RAM_TMP_ROOM
    except OSError:
        return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its stage's marker (its folder: tests/system/ is a pty, torchrun, a browser
    or a real tmpfs; tests/unit/ trains nothing); the stages run slowest first, so that with
    several workers (pytest-xdist) the long tests start early and the short ones fill in."""
    for item in items:
        stage = Path(str(item.fspath)).parent.name
        if stage in STAGES:
            item.add_marker(getattr(pytest.mark, stage))
    order = {stage: i for i, stage in enumerate(STAGES)}
    items.sort(key=lambda item: order.get(Path(str(item.fspath)).parent.name, len(STAGES)))


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[None]:
    """Collecting imports torch, torchvision and textual: as a training process does, with the
    collector paused and what they loaded frozen (in each worker; xdist's controller collects
    nothing, so the block is empty there)."""
    with heavy_imports():
        yield


def pytest_sessionstart(session: pytest.Session) -> None:
    """Temporary files of the suite and of every process it starts (torchrun's logs, control sockets,
    the benchmark's smoke run) go under pytest's own folder, removed after a passing session."""
    tmp = session.config._tmp_path_factory.getbasetemp() / "tmp"  # type: ignore[attr-defined]
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # forget a temp dir already looked up


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's caches or run index; never download (TORCH_HOME is empty). Each test
    has an index of its own: the runs it starts are the runs it finds."""
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture
def mini_data() -> Path:
    if not MINI.is_dir():
        pytest.skip(f"{MINI} not present")
    return MINI


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def project_env() -> dict[str, str]:
    """Environment for running the real command in a subprocess from the checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


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
    # With pytest-xdist, a worker tells the main process (whose temporary folder holds the
    # workers' own): the main process lists them and its exit status is the run's.
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    told = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "left-running.txt"
    if os.environ.get("PYTEST_XDIST_WORKER"):
        if LEFT_RUNNING:
            with told.open("a") as f:
                f.writelines(line + "\n" for line in LEFT_RUNNING)
    elif told.is_file():
        LEFT_RUNNING.extend(told.read_text().splitlines())
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
