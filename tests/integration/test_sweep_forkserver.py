"""A sweep's runs forked from its fork server start as ``subprocess.Popen`` would have started
them (their own session, log, environment, folder, exit code), with the trainer already
imported; and they are told to stop when the sweep dies, SIGKILL included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.sweep import forkserver
from engine.sweep.forkserver import ForkedRun, ForkServer
from engine.sweep.process import start_run
from tests.helpers.common import ROOT
from tests.helpers.waiting import wait_until

PROBE = "tests.helpers.fork_probe"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForkServer]:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    server = ForkServer()
    yield server
    server.close()


def said(log: Path) -> dict[str, object]:
    return dict(json.loads(log.read_text().splitlines()[0]))


def test_a_forked_run_has_its_own_session_log_environment_folder_and_exit_code(
    server: ForkServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "t000.log"
    run = server.start(PROBE, ["exit", "3"], log, {**os.environ, "PROBE": "trial 0"})
    assert run.wait(timeout=120) == 3 and run.poll() == 3
    probe = said(log)
    assert probe["pid"] == run.pid and probe["sid"] == run.pid  # a session of its own, as start_new_session
    assert probe["ppid"] != os.getpid()  # the server's child, not this process's
    assert probe["cwd"] == str(tmp_path) and probe["probe"] == "trial 0"
    argv = probe["argv"]
    assert isinstance(argv, list) and argv[0].endswith("fork_probe.py") and argv[1:] == ["exit", "3"]
    assert probe["torch"] is True  # the trainer was imported once, by the server


def test_a_signal_ends_a_forked_run_and_its_code_says_which(server: ForkServer, tmp_path: Path) -> None:
    log = tmp_path / "t001.log"
    run = server.start(PROBE, ["wait", str(tmp_path / "never")], log, dict(os.environ))
    wait_until(lambda: "waiting" in log.read_text(), what="the run to wait")
    run.send_signal(signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL
    run.send_signal(signal.SIGTERM)  # an ended run: nothing is sent, nothing fails


def test_the_runs_of_a_sweep_killed_with_sigkill_are_told_to_stop(tmp_path: Path) -> None:
    marker, log = tmp_path / "stopped", tmp_path / "t002.log"
    sweep = subprocess.Popen(
        [sys.executable, "-c", "import sys, os, time\nfrom pathlib import Path\n"
         "from engine.sweep.forkserver import ForkServer\n"
         f"run = ForkServer().start({PROBE!r}, ['wait', {str(marker)!r}], Path({str(log)!r}), dict(os.environ))\n"
         "print(run.pid, flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert sweep.stdout is not None
        pid = int(sweep.stdout.readline())
        wait_until(lambda: log.is_file() and "waiting" in log.read_text(), what="the run to wait", process=sweep)
        sweep.kill()
        wait_until(marker.is_file, what="the run's SIGTERM after its sweep was killed")
        assert marker.read_text() == "SIGTERM"
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), what="the run to end")
    finally:
        sweep.kill()
        sweep.wait()


@pytest.mark.parametrize("how", ["fork server", "exec"])
def test_start_run_gives_the_runs_code_and_log_either_way(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setattr(forkserver, "_server", None)  # (this test's own server)
    if how == "exec":
        monkeypatch.setenv(forkserver.START_ENV, "exec")
    log = tmp_path / "bad.log"
    try:
        run = start_run(["--lr", "-1"], log, None)
        assert isinstance(run, ForkedRun if how == "fork server" else subprocess.Popen)
        assert run.wait(timeout=120) == 2
        assert "--lr" in log.read_text()
    finally:
        if forkserver._server is not None:
            forkserver._server.close()
