"""The ``cifar-tui`` command: the dashboard by default, ``--headless`` for plain log lines."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from engine.cli import EXIT_USAGE, build_parser, config_from_args, run_headless
from engine.errors import UserError
from engine.rundir import check_run_dir, checkpoint_run_dir


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if cfg.run_dir and not cfg.resume:  # refuse before the screen opens, not after
            from pathlib import Path

            check_run_dir(Path(cfg.run_dir), resuming_here=False, overwrite=cfg.overwrite)
        if cfg.resume and cfg.run_dir:
            from pathlib import Path

            here = Path(cfg.run_dir).resolve() == checkpoint_run_dir(Path(cfg.resume))
            check_run_dir(Path(cfg.run_dir), resuming_here=here, overwrite=cfg.overwrite)
    except UserError as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.headless or not (sys.stdout.isatty() and sys.stdin.isatty()):
        if not args.headless:
            print("cifar-tui: not a terminal, running headless (plain lines)", file=sys.stderr)
        return run_headless(cfg)
    if not 0 < args.refresh <= 30:
        print("cifar-tui: error: --refresh must be > 0 and <= 30", file=sys.stderr)
        return EXIT_USAGE
    from tui.app import make_app

    app = make_app(cfg, refresh_hz=args.refresh)
    code = app.run()
    state = app.run_state
    if state.failed is not None:
        print(f"cifar-tui: {state.failed.error}: {state.failed.message}", file=sys.stderr)
    elif state.finished is not None:
        acc = state.finished.test_accuracy
        print(f"cifar-tui: {state.finished.reason}; test accuracy {'n/a' if acc is None else f'{100 * acc:.2f}%'}"
              f"; run directory {state.started.run_dir if state.started else '?'}")  # fmt: skip
    return int(code if code is not None else 0)


if __name__ == "__main__":
    sys.exit(main())
