"""`cifar-tui serve` in a real headless browser (Debian's Chromium driven by Playwright).

The served page must need its token, show the live dashboard, take keys that steer the run,
and leave training running when the tab closes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.rundir import read_events
from tests.helpers.browser import BROWSER, free_port, launch, needs_chromium, open_dashboard, status
from tests.helpers.common import live_children
from tests.helpers.waiting import wait_until


def kinds(run_dir: Path) -> list[str]:
    return [e.kind for e in read_events(run_dir)]


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
        _end_training(run_dir)


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


@needs_chromium
def test_dashboard_in_a_real_browser_steers_the_run_and_closing_leaves_training(
    served: tuple[str, Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    url, run_dir, server = served
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_dashboard(browser, url)
        wait_until(what="training to start", cond=lambda: "progress" in kinds(run_dir))

        page.keyboard.press("p")
        wait_until(what="the pause to reach events.jsonl", cond=lambda: "paused" in kinds(run_dir))
        page.keyboard.press("p")
        wait_until(what="the resume", cond=lambda: "resumed" in kinds(run_dir))
        page.keyboard.press("-")  # steered from the browser: the run's events say so
        wait_until(what="the halved LR", cond=lambda: "steered" in kinds(run_dir))
        steered = next(e for e in read_events(run_dir) if isinstance(e, ev.Steered))
        assert (steered.what, steered.new, steered.source) == ("lr_scale", 0.5, "browser")
        resumed_at = len(kinds(run_dir))
        wait_until(what="training to go on", cond=lambda: "progress" in kinds(run_dir)[resumed_at:])
        page.screenshot(path=str(tmp_path / "served.png"))
        assert (tmp_path / "served.png").stat().st_size > 10_000

        wait_until(what="the tab's dashboard process", cond=lambda: bool(attach_processes(server)))
        page.close()
        wait_until(what="the closed tab's dashboard to exit", cond=lambda: not attach_processes(server))
        closed_at = len(kinds(run_dir))
        wait_until(what="training after the tab closed", cond=lambda: "progress" in kinds(run_dir)[closed_at:])
        assert trainer_alive(run_dir) and "finished" not in kinds(run_dir)

        # Ctrl-C on `serve` with a tab open: it ends quietly with its dashboards, training goes on.
        open_dashboard(browser, url)
        dashboards = attach_processes(server)
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
        assert server.stderr is not None and server.stderr.read() == ""
        wait_until(
            what="the dashboards to exit",
            cond=lambda: not any(p.is_running() and p.status() != "zombie" for p in dashboards),
        )
        browser.close()
    stopped_at = len(kinds(run_dir))
    wait_until(what="training after serve stopped", cond=lambda: "progress" in kinds(run_dir)[stopped_at:])
    assert trainer_alive(run_dir)


def _end_training(run_dir: Path) -> None:
    if trainer_alive(run_dir):
        try:
            ControlClient(run_dir).send("stop")
        except Exception:
            os.kill(json.loads((run_dir / TRAINER_FILE).read_text())["pid"], signal.SIGKILL)


def _open_tab(port: int, token: str) -> socket.socket:
    """A browser tab at the protocol level: the websocket that starts a dashboard for it."""
    tab = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    tab.sendall(f"GET /ws/{token}?width=120&height=40 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    assert tab.recv(4096).startswith(b"HTTP/1.1 101"), "the websocket was refused"
    return tab


def _drain(tab: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while tab.recv(65536):
            pass


def _drop(tab: socket.socket, reset: bool) -> None:
    """The tab goes without a goodbye: its connection closed (FIN), or reset (RST) as by a killed browser."""
    if reset:
        tab.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tab.close()


def _dashboards_of(run_dir: Path) -> list[psutil.Process]:
    """Every live dashboard process of ``run_dir`` on this machine, whoever its parent is now."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = " ".join(process.info["cmdline"] or [])
        if command.startswith("/bin/sh"):  # a shell in front of one (textual-serve runs the command with sh -c)
            continue
        if "attach" in command and str(run_dir) in command and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def test_every_served_dashboard_ends_with_its_tab_its_server_or_a_signal(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    """Tabs that leave at many moments of their dashboard's start, abruptly, a headless browser
    that takes a screenshot and quits, SIGTERM to a dashboard, SIGKILL to the server: afterwards
    no dashboard process of the run is left."""
    run_dir = tmp_path / "served-run"  # a live run: its dashboards have the most to do as they start
    done = subprocess.run([sys.executable, "-m", "tui.cli", "--detach", "--data", "demo", "--weights", "none",
                           "--train-limit", "256", "--test-limit", "32", "--batch-size", "32", "--epochs", "200",
                           "--device", "cpu", "--loader", "tensor", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=project_env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tui.cli", "serve", str(run_dir), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        assert server.stdout is not None
        url = next(line.split(" at ", 1)[1].strip() for line in server.stdout if "?token=" in line)
        token = url.split("?token=")[1]
        delays = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0, 3.0]
        tabs = [_open_tab(port, token) for _ in delays]
        began = time.monotonic()
        for n, (tab, delay) in enumerate(zip(tabs, delays)):
            time.sleep(max(0.0, began + delay - time.monotonic()))
            _drop(tab, reset=n % 2 == 1)
        if BROWSER is not None:  # the headless browser that takes a picture and quits
            for n in range(1):
                subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--disable-background-networking", f"--screenshot={tmp_path / f'shot{n}.png'}",
                                "--window-size=800,600", url], capture_output=True, timeout=120)  # fmt: skip
        wait_until(lambda: not _dashboards_of(run_dir), what="every dropped tab's dashboard to end")

        kept = [_open_tab(port, token) for _ in range(2)]
        for tab in kept:  # a browser reads what it is sent
            threading.Thread(target=_drain, args=(tab,), daemon=True).start()
        wait_until(lambda: len(_dashboards_of(run_dir)) == 2, what="two open tabs' dashboards")
        first, second = _dashboards_of(run_dir)
        first.send_signal(signal.SIGTERM)
        wait_until(lambda: _dashboards_of(run_dir) == [second], what="the signalled dashboard to end")
        server.kill()  # however serve ends, its tabs' dashboards end with it
        server.wait(60)
        wait_until(lambda: not _dashboards_of(run_dir), what="the dashboards of a killed server to end")
        for tab in kept:
            tab.close()
    finally:
        if server.poll() is None:
            server.kill()
        for process in _dashboards_of(run_dir):
            process.kill()
        _end_training(run_dir)
    assert "progress" in kinds(run_dir)[-20:] or "finished" in kinds(run_dir)  # training went on throughout


@needs_chromium
def test_a_key_pressed_as_soon_as_the_page_shows_acts(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    """`p` at once after clicking into a fresh page, before the dashboard has drawn: the trainer
    pauses (the key is kept until the dashboard reaches the trainer), never a lost key."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency")
    url, run_dir, _server = served
    wait_until(what="training to start", cond=lambda: "progress" in kinds(run_dir))
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        page.wait_for_selector(".xterm-screen")
        page.click(".xterm-screen")
        page.keyboard.press("p")
        wait_until(what="the early key's pause in events.jsonl", cond=lambda: "paused" in kinds(run_dir), timeout=120)
        browser.close()
