"""``cifar-tui sweep`` in a terminal: the sweep runs in a process of its own (the headless sweep,
its lines in RUNS/NAME.sweep/sweep.log) and this process shows the sweep screen.

The screen owns the sweep it started, as the dashboard owns its run: q asks whether to stop it
(the running trials save) or to leave it running in the background; a lost terminal (an SSH
drop, a killed tmux session) or a stop signal stops it, saving. ``--watch`` opens the screen
on a sweep started elsewhere (another terminal, ``--headless``, another box's study) and q
only closes the screen. Enter on a trial opens its run's dashboard; leaving that dashboard
comes back to the sweep."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding

from tui.launcher import served
from tui.screens.dialogs import Choice
from tui.screens.sweep import SweepScreen
from tui.sweep_keys import act_on_trial


class SweepApp(App[Any]):
    """The sweep screen as an app; exits with ``("attach", RUN_DIR)`` to open a trial's run,
    ``"stop"`` or ``"leave"`` for the sweep it started, or None."""

    CSS_PATH = "app.tcss"
    TITLE = "cifar-tui sweep"
    BINDINGS = [Binding("ctrl+c", "quit_app", "Quit", show=False, priority=True)]  # as q: asks first

    def __init__(self, folder: Path, sweep: subprocess.Popen[bytes] | None = None, *,
                 driver_class: Any = None, refresh_s: float = 1.0) -> None:  # fmt: skip
        super().__init__(driver_class=driver_class)
        self.folder, self.sweep, self.refresh_s = folder, sweep, refresh_s
        self._asking = False

    def on_mount(self) -> None:
        self.push_screen(SweepScreen(self.folder, self.refresh_s, act_on_trial))

    def owns_a_running_sweep(self) -> bool:
        return self.sweep is not None and self.sweep.poll() is None

    def action_quit_app(self) -> None:
        if not self.owns_a_running_sweep():
            self.exit(None)
            return
        if self._asking:  # q q: the safe answer, as on the dashboard
            self.exit("stop")
            return
        self._asking = True

        def answered(choice: str | None) -> None:
            self._asking = False
            if choice in ("stop", "leave"):
                self.exit(choice)

        self.push_screen(Choice("The sweep is running. Quit?",
                                [("stop", "Stop the sweep (trials save)", "primary"),
                                 ("leave", "Leave it running", "default"), ("cancel", "Cancel", "default")],
                                again=("q", "stop")), answered)  # fmt: skip


def sweep_command(argv: list[str]) -> int:
    """``cifar-tui sweep``: the screen on a terminal, plain lines elsewhere (engine/sweep/cli.py)."""
    from engine.sweep.cli import sweep_main

    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    return sweep_main(argv, screen=show_sweep if terminal or served() else None)


def show_sweep(folder: Path, sweep_argv: list[str] | None) -> int:
    """The sweep screen on ``folder``: first starting the sweep (``sweep_argv``: its command line)
    unless it only watches one. The exit code: the sweep's when this screen started and stopped it."""
    sweep = _start_sweep(folder, sweep_argv) if sweep_argv is not None else None
    result: Any = None
    while True:
        result = _run_screen(folder, sweep)
        if not (isinstance(result, tuple) and result[0] == "attach"):
            break
        from tui.subcommands import attach_main

        attach_main([result[1]])
    if sweep is None:
        return _status(folder, 0)
    if result == "leave" and sweep.poll() is None:
        name = folder.name.removesuffix(".sweep")
        print(f"cifar-tui: the sweep {name} goes on in the background (its lines: {folder / 'sweep.log'})")
        print(f"cifar-tui: watch it: cifar-tui sweep {name} --watch --runs-root {folder.parent}")
        return 0
    if result == "lost":  # the sweep has had its one stop signal (a second would cut its trials' saves short)
        return 128 + signal.SIGHUP
    return _status(folder, _stop_sweep(sweep))


def _status(folder: Path, code: int) -> int:
    """The trials table on the normal screen once the sweep screen is gone: the terminal keeps it."""
    from engine.sweep.cli import show_status

    with contextlib.suppress(OSError):
        show_status(folder)
    return code


def _start_sweep(folder: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """The sweep itself, headless, in a session of its own (a Ctrl-C meant for the screen is not
    its signal): the screen tells it when to stop."""
    with open(folder / "sweep.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "tui.cli", "sweep", *argv, "--headless"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _run_screen(folder: Path, sweep: subprocess.Popen[bytes] | None) -> Any:
    from tui.terminal import TerminalGuard

    app: SweepApp | None = None

    def on_lost(reason: str, code: int, hangup: bool) -> None:
        # The terminal is gone (or a stop signal came): a sweep this screen started saves and stops.
        if sweep is not None and sweep.poll() is None:
            with contextlib.suppress(OSError):
                sweep.send_signal(signal.SIGTERM)  # (once: the guard calls this once)
        if app is not None:
            with contextlib.suppress(RuntimeError):
                app.call_from_thread(app.exit, "lost")

    guard = TerminalGuard(on_lost, served=served(), grace_s=5.0 if served() else 30.0)
    app = SweepApp(folder, sweep, driver_class=guard.driver_class())
    guard.start()
    try:
        app.run()
    finally:
        guard.stop()
    return app.return_value if not guard.hung_up else "lost"


def _stop_sweep(sweep: subprocess.Popen[bytes]) -> int:
    """Stop the sweep this screen started (its running trials save) and wait for it; its code.
    One signal only: a second one tells a sweep to stop its trials without their saves."""
    if sweep.poll() is None:
        with contextlib.suppress(OSError):
            sweep.send_signal(signal.SIGINT)
        with contextlib.suppress(OSError):
            print("cifar-tui: stopping the sweep: its running trials save a checkpoint and stop…", flush=True)
    return sweep.wait()
