"""The ``cifar-tui`` command: the dashboard by default, ``--headless`` for plain log lines,
``--detach`` to train in the background; the ``attach``, ``runs``, ``export`` and ``serve``
subcommands; ``stop|pause|resume|save|evaluate RUN``, ``steer RUN`` and ``label|archive|delete RUN``."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Sequence

from engine.cli import launch_plan
from engine.headless import run_headless, tolerant_output
from engine.options import build_parser, usage_error
from engine.run import console
from engine.run.errors import EXIT_CRASH, UserError
from tui.launcher import run_training
from tui.options import dashboard_parser
from tui.run_commands import (
    CONTROL_COMMANDS,
    MANAGE_COMMANDS,
    STEER_COMMAND,
    archive_main,
    control_main,
    delete_main,
    label_main,
    steer_main,
)
from tui.subcommands import attach_main, export_main, os_error_line, runs_main

LR_FIND = "lr-find"
SUBCOMMANDS = (
    "attach",
    "runs",
    "export",
    "serve",
    *CONTROL_COMMANDS,
    STEER_COMMAND,
    *MANAGE_COMMANDS,
    LR_FIND,
    "sweep",
)


def lr_find_main(argv: list[str]) -> int:
    """``cifar-tui lr-find [OPTIONS]``: the range test alone, on the run the options describe; its
    table and suggestion as plain lines, its record in the run directory."""
    args = build_parser(argv, prog="cifar-tui lr-find",
                        what=": a learning-rate range test only (about 100 steps), its table and a suggested "
                             "--lr as plain lines, the record in the run directory.").parse_args(argv)  # fmt: skip
    try:
        cfg, nproc = launch_plan(args)
        if nproc > 1:
            raise ValueError("lr-find runs in one process (leave out --nproc)")
        cfg = cfg.with_overrides(lr_find="only")
    except (UserError, ValueError) as exc:
        return usage_error(str(exc))
    return run_headless(cfg)


def _subcommand(name: str) -> Callable[[list[str]], int]:
    if name == "serve":
        from tui.serve import serve_main

        return serve_main
    if name in CONTROL_COMMANDS:
        return lambda argv: control_main(name, argv)
    if name == "sweep":
        from tui.sweep_app import sweep_command

        return sweep_command
    return {"attach": attach_main, "runs": runs_main, "export": export_main, "label": label_main,
            "archive": archive_main, "delete": delete_main, "steer": steer_main}[name]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    tolerant_output()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == LR_FIND:
        return lr_find_main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        try:
            code = _subcommand(argv[0])(argv[1:])
        except OSError as exc:  # a path the system refuses on the way (too long, no permission, a loop)
            return usage_error(os_error_line(exc))
        if code == 0 and (why := console.lost_output()):
            print(f"cifar-tui: error: cannot write the output ({why})", file=sys.stderr)
            return EXIT_CRASH
        return code
    if argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.5)
        hint = f"did you mean 'cifar-tui {close[0]}'?" if close else f"commands: {', '.join(SUBCOMMANDS)}"
        return usage_error(f"unknown command {argv[0]!r}; {hint} (training takes options only: cifar-tui --help)")
    args = dashboard_parser(argv).parse_args(argv)
    try:
        # An unusable run directory is refused before the screen opens, not after the data loaded.
        cfg, nproc = launch_plan(args)
    except (UserError, ValueError) as exc:
        return usage_error(str(exc))
    if not 0 < args.refresh <= 30:
        return usage_error("--refresh must be > 0 and <= 30")
    mode = "detach" if args.detach else "headless" if args.headless else "dashboard"
    if mode == "dashboard" and not (sys.stdout.isatty() and sys.stdin.isatty()):
        print("cifar-tui: not a terminal, running headless (plain lines)", file=sys.stderr)
        mode = "headless"
    if mode == "dashboard" and cfg.lr_find == "show":
        cfg = cfg.with_overrides(lr_find="ask")  # the dashboard offers the suggestion before training
    return run_training(nproc, cfg, mode=mode, refresh=args.refresh, max_restarts=args.max_restarts,
                        on_hangup=args.on_hangup, notify=args.notify)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
