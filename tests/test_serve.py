"""`cifar-tui serve` in a real headless browser (Debian's Chromium driven by Playwright).

The served page must need its token, show the live dashboard, take keys that steer the run,
and leave training running when the tab closes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.rundir import read_events
from tests.browser import BROWSER, launch, open_dashboard
from tests.conftest import live_children
from tests.pty_app import wait_until


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kinds(run_dir: Path) -> list[str]:
    return [e.kind for e in read_events(run_dir)]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def attach_processes(server: subprocess.Popen[str]) -> list[psutil.Process]:
    """The dashboards textual-serve runs for open tabs."""
    return live_children(server.pid, "attach")


@pytest.fixture
def served(tmp_path: Path, project_env: dict[str, str]) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """`cifar-tui serve` starting a small demo run in the background; stops both afterwards."""
    run_dir = tmp_path / "run"
    port = free_port()
    command = [sys.executable, "-m", "tui.cli", "serve", "--port", str(port), "--data", "demo", "--epochs", "200",
               "--train-limit", "512", "--test-limit", "100", "--batch-size", "32", "--loader", "tensor",
               "--device", "cpu", "--run-dir", str(run_dir)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env)
    try:
        url = ""
        assert server.stdout is not None
        for line in server.stdout:  # the run starts in the background, then the URL is printed
            if "serving" in line and "?token=" in line:
                url = line.split(" at ", 1)[1].strip()
                break
        assert url, f"no URL printed; stderr: {server.stderr.read() if server.stderr else ''}"
        yield url, run_dir, server
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if trainer_alive(run_dir):
            pid = json.loads((run_dir / TRAINER_FILE).read_text())["pid"]
            try:
                ControlClient(run_dir).send("stop")
            except Exception:
                os.kill(pid, signal.SIGKILL)


def test_served_dashboard_needs_its_token(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, _run_dir, _server = served
    base, token = url.split("/?token=")
    assert status(url) == 200
    page = urllib.request.urlopen(url, timeout=30).read().decode()
    assert f"/ws/{token}" in page and "googleapis" not in page and "https://" not in page  # works offline
    assert status(base + "/") == 403
    assert status(base + "/?token=" + "x" * len(token)) == 403
    assert status(base + "/static/js/textual.js") == 403  # no cookie, no token: nothing is served
    assert status(base + "/ws/wrong") == 403
    assert status(base + "/download/anything?token=" + token) == 404  # textual-serve's downloads are not routed


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (CI installs Debian's chromium)")
def test_dashboard_in_a_real_browser_steers_the_run_and_closing_leaves_training(
    served: tuple[str, Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    url, run_dir, server = served
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_dashboard(browser, url)
        wait_until(what="training to start", test=lambda: "progress" in kinds(run_dir))

        page.keyboard.press("p")
        wait_until(what="the pause to reach events.jsonl", test=lambda: "paused" in kinds(run_dir))
        page.keyboard.press("p")
        wait_until(what="the resume", test=lambda: "resumed" in kinds(run_dir))
        resumed_at = len(kinds(run_dir))
        wait_until(what="training to go on", test=lambda: "progress" in kinds(run_dir)[resumed_at:])
        page.screenshot(path=str(tmp_path / "served.png"))
        assert (tmp_path / "served.png").stat().st_size > 10_000

        wait_until(what="the tab's dashboard process", test=lambda: bool(attach_processes(server)))
        page.close()
        wait_until(what="the closed tab's dashboard to exit", test=lambda: not attach_processes(server))
        closed_at = len(kinds(run_dir))
        wait_until(what="training after the tab closed", test=lambda: "progress" in kinds(run_dir)[closed_at:])
        assert trainer_alive(run_dir) and "finished" not in kinds(run_dir)

        # Ctrl-C on `serve` with a tab open: it ends quietly with its dashboards, training goes on.
        open_dashboard(browser, url)
        dashboards = attach_processes(server)
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        assert server.stderr is not None and server.stderr.read() == ""
        wait_until(
            what="the dashboards to exit",
            test=lambda: not any(p.is_running() and p.status() != "zombie" for p in dashboards),
        )
        browser.close()
    stopped_at = len(kinds(run_dir))
    wait_until(what="training after serve stopped", test=lambda: "progress" in kinds(run_dir)[stopped_at:])
    assert trainer_alive(run_dir)
