"""The terminal vanishes, stalls or is signalled under a real dashboard in a real pty."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.rundir import read_events
from engine.train.checkpoint import load_checkpoint
from tests.helpers.common import ROOT
from tests.helpers.pty_app import PtyApp, count_in_events
from tests.helpers.waiting import wait_until

TINY = ["--data", "demo", "--weights", "none", "--train-limit", "256", "--test-limit", "64", "--batch-size", "32",
        "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def start_training(tmp_path: Path, *extra: str) -> tuple[PtyApp, Path]:
    run = tmp_path / "run"
    app = PtyApp([*TINY, "--epochs", "200", "--run-dir", str(run), *extra])
    wait_until(lambda: count_in_events(run, '"kind":"progress"') > 0 or app.poll() is not None, what="training")
    assert app.poll() is None, app.output[-2000:]
    return app, run


def trainer_pid(run: Path) -> int:
    return int(json.loads((run / TRAINER_FILE).read_text())["pid"])


def test_ssh_drop_saves_stops_trainer_and_app_exits(tmp_path: Path) -> None:
    app, run = start_training(tmp_path)
    try:
        app.hang_up()
        assert app.wait() == 128 + signal.SIGHUP
    finally:
        app.kill()
    wait_until(lambda: not trainer_alive(run), what="the trainer to end")
    last = read_events(run)[-1]
    assert isinstance(last, ev.Finished) and last.reason == "stopped"
    assert last.cause in ("terminal hung up", "SIGHUP"), last.cause  # what happened, not "a dashboard"
    assert load_checkpoint(Path(last.checkpoint))["global_step"] == last.global_step > 0


def test_sigterm_on_a_live_terminal_saves_and_restores_the_terminal(tmp_path: Path) -> None:
    app, run = start_training(tmp_path)
    try:
        os.kill(app.pid, signal.SIGTERM)
        assert app.wait() == 128 + signal.SIGTERM
        wait_until(lambda: b"\x1b[?1049l" in app.output, what="the alternate screen to be left")
    finally:
        app.kill()
    last = read_events(run)[-1]
    assert isinstance(last, ev.Finished) and last.reason == "stopped" and last.checkpoint
    assert last.cause == "SIGTERM"


def test_ssh_drop_with_on_hangup_detach_keeps_training(tmp_path: Path) -> None:
    app, run = start_training(tmp_path, "--on-hangup", "detach")
    try:
        app.hang_up()
        assert app.wait() == 128 + signal.SIGHUP
    finally:
        app.kill()
    pid = trainer_pid(run)
    assert trainer_alive(run)
    before = count_in_events(run, '"kind":"progress"')
    wait_until(lambda: count_in_events(run, '"kind":"progress"') > before, what="training to go on")
    client = ControlClient(Path(json.loads((run / TRAINER_FILE).read_text())["socket"]))
    try:
        assert client.send("stop_save")["ok"]
    finally:
        client.close()
    wait_until(lambda: not trainer_alive(run), what="the detached trainer to stop")
    last = read_events(run)[-1]
    assert isinstance(last, ev.Finished) and last.reason == "stopped", pid


def test_attached_dashboard_exits_when_its_terminal_goes_and_training_goes_on(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    headless = subprocess.Popen([sys.executable, "-m", "tui.cli", "--headless", *TINY, "--epochs", "200",
                                 "--run-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd=ROOT)  # fmt: skip
    try:
        wait_until(lambda: count_in_events(run, '"kind":"progress"') > 0 and (run / TRAINER_FILE).exists())
        app = PtyApp(["attach", str(run)])
        try:
            wait_until(lambda: b"progress" in app.output, what="the attached dashboard to draw")
            app.hang_up()
            assert app.wait() == 128 + signal.SIGHUP
        finally:
            app.kill()
        assert headless.poll() is None  # training goes on
        before = count_in_events(run, '"kind":"progress"')
        wait_until(lambda: count_in_events(run, '"kind":"progress"') > before, what="training to go on")
    finally:
        headless.send_signal(signal.SIGINT)
        headless.wait(120)


def test_sighup_first_then_the_hangup(tmp_path: Path) -> None:
    """The other order (closing the master alone, above, makes the kernel send SIGHUP after)."""
    app, run = start_training(tmp_path)
    try:
        os.kill(app.pid, signal.SIGHUP)
        app.hang_up()
        assert app.wait() == 128 + signal.SIGHUP
    finally:
        app.kill()
    wait_until(lambda: not trainer_alive(run), what="the trainer to end")
    assert isinstance(read_events(run)[-1], ev.Finished)


def test_a_finished_run_rings_and_sends_a_desktop_notification(tmp_path: Path) -> None:
    run = tmp_path / "run"
    app = PtyApp([*TINY, "--epochs", "1", "--run-dir", str(run)])
    try:
        wait_until(lambda: b"\x1b]777;notify;cifar-tui training completed;" in app.output, what="the notification")
        assert b"\x1b]9;cifar-tui: training completed: test accuracy" in app.output and b"\x07" in app.output
        os.write(app.master, b"q")
        assert app.wait() == 0
    finally:
        app.kill()
