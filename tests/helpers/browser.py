"""Driving a served dashboard in a real browser (Playwright + the system's Chromium): shared by
the browser test and the screenshot script."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

needs_chromium = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine (CI installs Debian's chromium)"
)
"""A test that drives a real browser: skipped, saying why, where none is installed."""

# Counts what the dashboard sends over the websocket: the page draws on a canvas, so its first
# frames (some KB) are the sign that the dashboard is up and takes keys.
COUNT_RECEIVED = """
    window.__received = 0;
    const Native = window.WebSocket;
    window.WebSocket = function (...args) {
        const socket = new Native(...args);
        socket.addEventListener('message', (e) => { window.__received += (e.data.byteLength || e.data.length || 0); });
        return socket;
    };
    window.WebSocket.prototype = Native.prototype;
"""


def open_dashboard(browser: Any, url: str, width: int = 1280, height: int = 800) -> Any:
    """A new page on ``url`` once the dashboard has drawn its first frames; keys go to it."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(COUNT_RECEIVED)
    page.goto(url)
    page.wait_for_selector(".xterm-screen")
    page.wait_for_function("window.__received > 2000", timeout=120_000)
    page.click(".xterm-screen")
    return page


def launch(playwright: Any) -> Any:
    assert BROWSER is not None
    return playwright.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
