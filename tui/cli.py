"""The ``cifar-tui`` command: the dashboard by default, ``--headless`` for plain log lines,
``--detach`` to train in the background, and the ``attach``, ``runs`` and ``export`` subcommands."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli import (
    EXIT_USAGE,
    LinePrinter,
    OneLineParser,
    build_parser,
    launch_plan,
    path_arg,
    run_headless,
    tolerant_output,
)
from engine.run import console
from engine.run.config import TrainConfig
from engine.run.errors import EXIT_CRASH, UserError
from engine.run.wording import event_lines
from engine.session.launch import distributed_launch, end_code_of_run, exit_code_of_run, run_distributed

if TYPE_CHECKING:
    from tui.app import CifarTui
    from tui.terminal import TerminalGuard

SUBCOMMANDS = ("attach", "runs", "export", "serve")


def fail(message: str) -> int:
    print(f"cifar-tui: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: what it was about and why."""
    name = str(exc.filename) if exc.filename is not None else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    return f"cannot use {shown!r}: {exc.strerror or exc}" if name else f"{exc.strerror or exc}"


def _subcommand(name: str) -> Callable[[list[str]], int]:
    if name == "serve":
        from tui.serve import serve_main

        return serve_main
    return {"attach": attach_main, "runs": runs_main, "export": export_main}[name]


def main(argv: Sequence[str] | None = None) -> int:
    tolerant_output()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        try:
            code = _subcommand(argv[0])(argv[1:])
        except OSError as exc:  # a path the system refuses on the way (too long, no permission, a loop)
            return fail(os_error_line(exc))
        if code == 0 and (why := console.lost_output()):
            print(f"cifar-tui: error: cannot write the output ({why})", file=sys.stderr)
            return EXIT_CRASH
        return code
    if argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.5)
        hint = f"did you mean 'cifar-tui {close[0]}'?" if close else f"commands: {', '.join(SUBCOMMANDS)}"
        return fail(f"unknown command {argv[0]!r}; {hint} (training takes options only: cifar-tui --help)")
    args = build_parser(argv).parse_args(argv)
    try:
        # An unusable run directory is refused before the screen opens, not after the data loaded.
        cfg, nproc = launch_plan(args)
    except (UserError, ValueError) as exc:
        return fail(str(exc))
    if not 0 < args.refresh <= 30:
        return fail("--refresh must be > 0 and <= 30")
    if args.detach:
        return (
            dashboard_distributed(nproc, argv, cfg, args.refresh, detach=True, max_restarts=args.max_restarts)
            if nproc > 1
            else detach_training(cfg)
        )
    if args.headless or not (sys.stdout.isatty() and sys.stdin.isatty()):
        if not args.headless:
            print("cifar-tui: not a terminal, running headless (plain lines)", file=sys.stderr)
        return run_distributed(nproc, argv, cfg, args.max_restarts) if nproc > 1 else run_headless(cfg)
    if nproc > 1:
        return dashboard_distributed(nproc, argv, cfg, args.refresh, max_restarts=args.max_restarts,
                                     on_hangup=args.on_hangup, notify=args.notify)  # fmt: skip
    from tui.app import make_app

    return run_app(
        lambda guard: make_app(
            cfg, refresh_hz=args.refresh, guard=guard, on_hangup=args.on_hangup, notify_desktop=args.notify
        )
    )


def start_ranks(nproc: int, argv: Sequence[str], cfg: TrainConfig, max_restarts: int) -> tuple[Path, Path] | int:
    """Start the ranks under torchrun in their own session (their output in RUN_DIR.torchrun.log
    beside the run); (run directory, log) once rank 0 has started the run, else the exit code."""
    import subprocess

    run_dir, command = distributed_launch(nproc, argv, cfg, max_restarts)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.with_name(run_dir.name + ".torchrun.log")
    events = run_dir / "events.jsonl"
    before = events.stat().st_size if events.is_file() else 0  # a resumed run's earlier events
    print(f"[launching] {nproc} processes (torchrun); their output: {log_path}", flush=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while not (events.is_file() and b'"run_started"' in events.read_bytes()[before:]):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            print("\n".join(tail), file=sys.stderr)
            return exit_code_of_run(run_dir, proc.returncode)
        time.sleep(0.2)
    return run_dir, log_path


def dashboard_distributed(
    nproc: int,
    argv: Sequence[str],
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
    started = start_ranks(nproc, argv, cfg, max_restarts)
    if isinstance(started, int):
        return started
    run_dir, log_path = started
    if detach:
        print(f"detached: {nproc} processes train in the background\nwatch and steer it: cifar-tui attach {run_dir}")
        return 0
    from engine.session.attached import LaunchedEngine
    from tui.app import make_app

    def build(guard: TerminalGuard) -> CifarTui:
        engine = LaunchedEngine(run_dir, log_path)
        return make_app(cfg, lambda _cfg: engine, refresh_hz=refresh, guard=guard, on_hangup=on_hangup,
                        notify_desktop=notify)  # fmt: skip

    code = run_app(build)  # it says where a detached run can be watched
    end = end_code_of_run(run_dir)
    # This command started the run; if it ended, say how, as one process would (a lost terminal's code wins).
    return code if end is None else code or end


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
            report_after_app(app)
    if code is None and app.return_code:  # the dashboard itself crashed (Textual printed why): never 0
        return int(app.return_code)
    return int(code if code is not None else (guard.exit_code or 0))


def report_after_app(app: object) -> None:
    """One line on the normal screen once the dashboard is gone: the terminal keeps a record."""
    state = app.run_state  # type: ignore[attr-defined]
    run_dir = state.started.run_dir if state.started else "?"
    if getattr(app, "detached_message", ""):
        print(f"cifar-tui: {app.detached_message}")  # type: ignore[attr-defined]
        print(f"cifar-tui: reconnect with: cifar-tui attach {run_dir}")
    elif state.failed is not None:
        print(f"cifar-tui: {state.failed.error}: {state.failed.message}", file=sys.stderr)
    elif state.finished is not None:
        acc = state.finished.test_accuracy
        print(f"cifar-tui: {state.finished.reason}; test accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}; "
              f"run directory {run_dir}")  # fmt: skip
        for level, line in event_lines(state.finished):  # the final checkpoint lost (a full disk)
            if level == "error":
                print(f"cifar-tui: {line}", file=sys.stderr)
    elif not getattr(app, "owns_training", True):
        print(f"cifar-tui: dashboard closed; training continues in {run_dir}")


def served() -> bool:
    """Whether this process runs under textual-serve (Textual's web driver talks over pipes)."""
    return os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver")


def detach_training(cfg: TrainConfig, on_started: Callable[[str], None] | None = None) -> int:
    """Start the trainer, wait until its run directory exists, cut it loose, print how to attach;
    ``on_started`` hears the run directory."""
    from engine.run import events as ev
    from engine.session.child import TrainerProcess

    proc = TrainerProcess(cfg)
    proc.start()
    printer = LinePrinter()
    run_dir = ""
    for event in proc.events():
        if isinstance(event, ev.Failed):
            proc.close()
            return fail(event.message)
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


def attach_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui attach", description="Open the dashboard on a live or finished run.")
    p.add_argument("run_dir", nargs="?", type=path_arg("RUN_DIR"),
                   help="run directory (default: the latest under --runs-root)")  # fmt: skip
    p.add_argument("--runs-root", default="runs", type=path_arg("--runs-root"))
    p.add_argument("--refresh", type=float, default=1.0)
    args = p.parse_args(argv)
    from engine.run.summary import latest_run

    run_dir = Path(args.run_dir) if args.run_dir else latest_run(Path(args.runs_root))
    if run_dir is None:
        return fail(f"no runs under {args.runs_root}/ (start one, or give a run directory)")
    if not (run_dir / "events.jsonl").is_file():
        return fail(f"{run_dir} holds no run (no events.jsonl)")
    if not 0 < args.refresh <= 30:
        return fail("--refresh must be > 0 and <= 30")
    if not (sys.stdout.isatty() and sys.stdin.isatty()) and not served():
        return fail("attach needs a terminal (or a browser: cifar-tui serve)")
    from engine.session.attached import AttachedEngine
    from tui.app import make_app

    cfg = _run_config(run_dir)
    return run_app(
        lambda guard: make_app(cfg, lambda _cfg: AttachedEngine(run_dir), refresh_hz=args.refresh, guard=guard)
    )


def _run_config(run_dir: Path) -> TrainConfig:
    import json

    try:
        data = json.loads((run_dir / "config.json").read_bytes())
        return TrainConfig.from_dict(data) if isinstance(data, dict) else TrainConfig()
    except Exception:  # a damaged config.json: the events still replay
        return TrainConfig()


def runs_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui runs", description="List the runs in the runs folder.")
    p.add_argument("--runs-root", default="runs", type=path_arg("--runs-root"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    from engine.run.summary import list_runs, runs_json
    from engine.run.wording import duration

    root = Path(args.runs_root)
    if root.exists() and not root.is_dir():
        return fail(f"--runs-root {root} is not a folder")
    runs = list_runs(root)
    if args.json:
        print(runs_json(runs))
        return 0
    if not runs:
        print(f"no runs under {args.runs_root}/")
        return 0
    header = f"{'name':<40} {'state':<9} {'recipe':<9} {'data':<16} {'epochs':>7} {'best acc':>8}  {'started':<16} {'duration':>8}"
    print(header)
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
        best = f"{100 * r.best_accuracy:.2f}%" if r.best_accuracy is not None else "--"
        dur = duration(r.duration)
        data = r.data if len(r.data) <= 16 else "…" + r.data[-15:]
        print(
            f"{r.name[:40]:<40} {r.state:<9} {r.recipe:<9} {data:<16} {f'{r.epochs_done}/{r.epochs}':>7} {best:>8}  {started:<16} {dur:>8}"
        )
    return 0


def export_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui export", description="Write a run's metrics for other tools: CSV, TensorBoard.")
    p.add_argument("run_dir", type=path_arg("RUN_DIR"))
    p.add_argument("--csv", action="store_true", help="steps.csv and epochs.csv (in --out, default: the run directory)")
    p.add_argument("--out", type=path_arg("--out"), help="folder for the CSV files (default: the run directory)")
    p.add_argument("--tensorboard", type=path_arg("--tensorboard"), metavar="LOGDIR", help="TensorBoard event files in LOGDIR/<run name>/ "
                   "(needs: pip install tensorboard); then: tensorboard --logdir LOGDIR")  # fmt: skip
    args: argparse.Namespace = p.parse_args(argv)
    if not (args.csv or args.tensorboard):
        return fail("say what to write: --csv, --tensorboard LOGDIR, or both")
    from engine.run.export import ExportError, export_csv, export_tensorboard

    run_dir = Path(args.run_dir)
    if not (run_dir / "events.jsonl").is_file():
        return fail(f"{run_dir} holds no run (no events.jsonl)")
    try:
        written = export_csv(run_dir, Path(args.out) if args.out else run_dir) if args.csv else []
        if args.tensorboard:
            written.append(export_tensorboard(run_dir, Path(args.tensorboard)))
    except ExportError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the export: {exc.strerror or exc}")
    except Exception as exc:  # a damaged run: say so, never a traceback
        return fail(f"cannot export {run_dir}: its files are damaged ({type(exc).__name__})")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
