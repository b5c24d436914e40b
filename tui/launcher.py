"""Starting a run from ``cifar-tui``'s command line, one path for every front: in the
background (``--detach``, and ``serve``), headless, or under the dashboard; as one trainer
process or as N ranks (``--nproc``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.headless import run_headless
from engine.options import usage_error
from engine.run.config import TrainConfig
from engine.run.errors import exit_code
from engine.run.lines import LinePrinter
from engine.run.wording import event_lines, percent
from engine.session.launch import last_end, run_distributed, start_ranks

if TYPE_CHECKING:
    from tui.app import CifarTui
    from tui.controller import RunController
    from tui.terminal import TerminalGuard


def start_in_background(nproc: int, cfg: TrainConfig, max_restarts: int) -> Path | int:
    """Start the run in the background (one trainer process, or ``nproc`` ranks); its run
    directory once it has started, else the exit code."""
    if nproc > 1:
        started = start_ranks(nproc, cfg, max_restarts)
        return started if isinstance(started, int) else started[0]
    seen: list[str] = []
    code = detach_training(cfg, seen.append)
    return Path(seen[0]) if code == 0 and seen else code or 1


def run_training(
    nproc: int,
    cfg: TrainConfig,
    *,
    mode: str,
    refresh: float = 1.0,
    max_restarts: int = 0,
    on_hangup: str = "stop",
    notify: bool = True,
) -> int:
    """Train ``cfg`` as ``mode`` says: ``detach`` (in the background, say how to attach),
    ``headless`` (plain lines here) or ``dashboard``; the exit code."""
    if mode == "detach":
        if nproc == 1:
            return detach_training(cfg)
        return dashboard_distributed(nproc, cfg, refresh, detach=True, max_restarts=max_restarts)
    if mode == "headless":
        return run_distributed(nproc, cfg, max_restarts) if nproc > 1 else run_headless(cfg)
    if nproc > 1:
        return dashboard_distributed(nproc, cfg, refresh, max_restarts=max_restarts, on_hangup=on_hangup,
                                     notify=notify)  # fmt: skip
    from tui.app import make_app

    return run_app(lambda guard: make_app(cfg, refresh_hz=refresh, guard=guard, on_hangup=on_hangup,
                                          notify_desktop=notify))  # fmt: skip


def dashboard_distributed(
    nproc: int,
    cfg: TrainConfig,
    refresh: float,
    *,
    detach: bool = False,
    max_restarts: int = 0,
    on_hangup: str = "stop",
    notify: bool = True,
) -> int:
    """``--nproc N`` with the dashboard: the ranks start under torchrun in the background (their
    output in RUN_DIR.torchrun.log beside the run) and the dashboard follows rank 0's run and
    owns it as it owns one trainer process: keys steer every rank, q asks to stop the run, a
    lost terminal saves and stops it (or leaves it, --on-hangup detach), d detaches."""
    started = start_ranks(nproc, cfg, max_restarts)
    if isinstance(started, int):
        return started
    run_dir, log_path = started
    if detach:
        print(f"detached: {nproc} processes train in the background\nwatch and steer it: cifar-tui attach {run_dir}")
        return 0
    from engine.session.attached import LaunchedSession
    from tui.app import make_app

    def build(guard: TerminalGuard) -> CifarTui:
        engine = LaunchedSession(run_dir, log_path)
        return make_app(cfg, lambda _cfg: engine, refresh_hz=refresh, guard=guard, on_hangup=on_hangup,
                        notify_desktop=notify)  # fmt: skip

    code = run_app(build)  # it says where a detached run can be watched
    end = last_end(run_dir)
    # This command started the run; if it ended, say how, as one process would (a lost terminal's code wins).
    return code if end is None else code or exit_code(end)


def run_app(build: Callable[[TerminalGuard], CifarTui]) -> int:
    """Run a dashboard under a TerminalGuard: a lost terminal or SIGTERM/SIGHUP always ends it."""
    from tui.terminal import TerminalGuard

    app: CifarTui | None = None

    def on_lost(reason: str, code: int, hangup: bool) -> None:
        if app is not None:
            app.on_terminal_lost(reason, code, hangup)

    # Served, nobody can see a slow exit: a dashboard whose browser tab or server is gone ends soon.
    guard = TerminalGuard(on_lost, served=served(), grace_s=5.0 if served() else 30.0)
    app = build(guard)
    guard.start()
    try:
        code = app.run()
    finally:
        guard.stop()
    if not guard.hung_up:  # nobody is left to read it otherwise
        with contextlib.suppress(OSError):  # the terminal may go in the meantime
            report_after_app(app.controller)
    if code is None and app.return_code:  # the dashboard itself crashed (Textual printed why): never 0
        return int(app.return_code)
    return int(code if code is not None else (guard.exit_code or 0))


def report_after_app(run: RunController) -> None:
    """One line on the normal screen once the dashboard is gone: the terminal keeps a record."""
    state = run.run_state
    run_dir = state.started.run_dir if state.started else "?"
    if run.detached_message:
        print(f"cifar-tui: {run.detached_message}")
        print(f"cifar-tui: reconnect with: cifar-tui attach {run_dir}")
    elif state.failed is not None:
        print(f"cifar-tui: {state.failed.error}: {state.failed.message}", file=sys.stderr)
    elif state.finished is not None:
        acc = state.finished.test_accuracy
        print(f"cifar-tui: {state.finished.reason}; test accuracy {percent(acc)}; "
              f"run directory {run_dir}")  # fmt: skip
        for level, line in event_lines(state.finished):  # the final checkpoint lost (a full disk)
            if level == "error":
                print(f"cifar-tui: {line}", file=sys.stderr)
    elif not run.owns_training:
        print(f"cifar-tui: dashboard closed; training continues in {run_dir}")


def served() -> bool:
    """Whether this process runs under textual-serve (Textual's web driver talks over pipes)."""
    return os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver")


def detach_training(cfg: TrainConfig, on_started: Callable[[str], None] | None = None) -> int:
    """Start the trainer, wait until its run directory exists, cut it loose, print how to attach;
    ``on_started`` hears the run directory."""
    from engine.run import events as ev
    from engine.session.child import ChildSession

    proc = ChildSession(cfg)
    proc.start()
    printer = LinePrinter()
    run_dir = ""
    for event in proc.events():
        if isinstance(event, ev.Failed):
            proc.close()
            return usage_error(event.message)
        if isinstance(event, ev.RunStarted):
            run_dir = event.run_dir
            printer(event)
            proc.detach()
        elif isinstance(event, ev.Detached):
            print(event.message)
            break
        elif isinstance(event, ev.Status | ev.Log):
            printer(event)
    proc.close()
    if on_started is not None:
        on_started(run_dir)
        return 0
    print(f"watch and steer it: cifar-tui attach {run_dir}")
    print("list runs: cifar-tui runs")
    return 0
