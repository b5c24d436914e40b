"""The ``cifar-tui`` command line: the engine's training options with the dashboard's own around
them, and a ``--help`` whose key list comes from the key map (``tui/keys.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from engine.options import build_parser, on_off

DASHBOARD_OPTIONS = ("--headless", "--refresh", "--detach", "--notify", "--on-hangup")
"""Options of the dashboard, not of training: a rank of ``--nproc`` never takes them."""

EPILOG = """\
commands:
  cifar-tui [OPTIONS]              train with the live dashboard (--headless: plain lines)
  cifar-tui attach [RUN]           the dashboard on a run: the live one, or by name or folder
  cifar-tui runs [--json]          your runs, from any folder (filter: --state --match; --sort)
  cifar-tui pause|resume|save|evaluate|stop [RUN]   act on a run without a dashboard
  cifar-tui steer [RUN] --lr-scale X --epochs N --early-stop R --target-accuracy P
                                   change a running training at its next batch
  cifar-tui lr-find [OPTIONS]      learning-rate range test: loss per LR, a suggested --lr
  cifar-tui label|archive|delete RUN                name, tag, hide or remove a run
  cifar-tui export RUN... --csv    steps, epochs, steering as CSV (--tensorboard LOGDIR: event files)
  cifar-tui serve [RUN]            the dashboard in a browser, private (token), http://127.0.0.1:8000

dashboard keys:
{keys}

exit codes:
  0 completed   1 training crashed or diverged, or its final checkpoint not saved
  2 bad input   130 stopped early
  129 terminal lost or SIGHUP   143 SIGTERM

examples:
  cifar-tui --data demo                         offline demo data, trains at once
  cifar-tui --recipe fast --headless            the fast recipe, plain log lines
  cifar-tui --data ~/pets --epochs 5 --detach   your own ImageFolder, in the background
"""


def _front(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: plain log lines (also used when stdout is not a terminal)",
    )


def _dashboard(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dashboard")
    g.add_argument("--refresh", type=float, default=1.0, help="plot redraws per second at most (default 1)")
    g.add_argument("--detach", action="store_true", help="train in the background; reconnect with: cifar-tui attach")
    g.add_argument("--notify", type=on_off, default=True, metavar="on|off",
                   help="bell and desktop notification (OSC 9/777, forwarded over SSH) when a run ends (default on)")  # fmt: skip
    g.add_argument("--on-hangup", choices=("stop", "detach"), default="stop",
                   help="when the terminal goes away (SSH drop): save and stop training (default), "
                        "or keep it running in the background")  # fmt: skip


def dashboard_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """``cifar-tui``'s parser: help shows each option's value under the recipe named in ``argv``."""
    return build_parser(
        argv,
        prog="cifar-tui",
        what=" and watch it live.",
        epilog=EPILOG.format(keys="\n".join(_key_lines())),
        front_options=_front,
        more_options=_dashboard,
    )


def _key_lines() -> list[str]:
    # Imported here: tui.keys needs Textual, which the commands that open no screen
    # (``cifar-tui runs``, ``stop``, ...) should not pay 0.15 s to import.
    from tui.keys import epilog_lines

    return epilog_lines()
