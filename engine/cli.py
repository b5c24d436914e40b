"""``python -m engine``: the headless command (one process, or N ranks through torchrun).

Importing this module does not import torch; only running training does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from engine.headless import run_headless, tolerant_output
from engine.options import build_parser, config_from_args
from engine.ranks.plan import distributed_problem, launch_values, launched, rank_config
from engine.run.config import TrainConfig
from engine.run.errors import EXIT_CRASH, EXIT_USAGE, UserError
from engine.run.rundir import check_target
from engine.session.launch import preflight, run_distributed


def launch_plan(args: argparse.Namespace, *, check_run_dir: bool = True) -> tuple[TrainConfig, int]:
    """What an entry point is asked to train and in how many processes, checked before anything
    starts (a UserError or ValueError says what is wrong, in one line). ``check_run_dir``: refuse
    an unusable run directory now (several processes always do: not in N processes at once)."""
    cfg = config_from_args(args)
    nproc = launch_values(args.nproc, args.max_restarts)
    if launched():  # one rank of a launch: the launcher checked
        return cfg, nproc
    if check_run_dir or nproc > 1:
        check_target(cfg)
    if nproc > 1 and (problem := distributed_problem(cfg, nproc)):
        raise ValueError(problem)
    if nproc > 1:
        preflight(cfg)
    return cfg, nproc


def main(argv: Sequence[str] | None = None) -> int:
    """Headless-only entry point (``python -m engine``)."""
    tolerant_output()
    if (given := rank_config()) is not None:  # one rank of a launch: the launcher resolved and checked it
        return run_headless(given)  # (as a rank: engine.run.errors.rank_exit_code)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        cfg, nproc = launch_plan(args, check_run_dir=False)  # one process: the trainer checks it
    except (UserError, ValueError) as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if nproc > 1 and not launched():
        return run_distributed(nproc, cfg, args.max_restarts)
    started = time.time()
    code = run_headless(cfg)
    if code == EXIT_CRASH:
        print(f"(after {time.time() - started:.0f}s; see events.jsonl in the run directory)", file=sys.stderr)
    return code
