"""``cifar-tui sweep NAME --space ... [run options]``: start or continue a sweep, or show it.

    cifar-tui sweep lr-wd --recipe fast --space lr=log:0.05..0.8 --space weight-decay=log:1e-4..1e-3 \\
        --space cutout=choice:0,8,12 --trials 16 --parallel 2
    cifar-tui sweep lr-wd --status            # the trials table of the study, nothing started
    cifar-tui sweep lr-wd --watch             # the sweep screen on a sweep that runs elsewhere

Options the sweep does not know are the runs' options (every trial takes them); a bad space or
option is one line and exit 2, before anything is written."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from engine.options import OneLineParser, peek_option, usage_error
from engine.run.control_socket import same_process
from engine.run.errors import EXIT_USAGE, first_line
from engine.run.fileio import atomic_write_json
from engine.sweep.plan import PLAN_FILE, PRUNERS, SAMPLERS, SNAPSHOT, SweepPlan, check_space
from engine.sweep.process import gpu_ids
from engine.sweep.space import SpaceError, parse_space, read_space_file
from engine.sweep.storage import StorageError, open_study_or_say
from engine.sweep.study import Sweep

NOT_IN_A_TRIAL = ("--run-dir", "--name", "--resume", "--nproc", "--detach", "--overwrite")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="cifar-tui sweep", description="Many runs on Optuna: which settings are best.",
                      epilog="Any other option is a run option: every trial takes it.")  # fmt: skip
    p.add_argument("name", metavar="NAME", help="the sweep's name: RUNS/NAME.sweep/ holds its study")
    p.add_argument("--space", action="append", default=[], metavar="NAME=KIND:VALUES",
                   help="a swept option: log:LO..HI, float:LO..HI, int:LO..HI or choice:A,B,C (repeat it)")  # fmt: skip
    p.add_argument("--space-file", metavar="FILE.toml",
                   help='more swept options from a TOML file: a [space] table of NAME = "KIND:VALUES" '
                        "or NAME = [choices]")  # fmt: skip
    p.add_argument("--trials", type=int, default=16, help="trials in all (default 16)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna's sampler (default tpe)")
    p.add_argument("--pruner", choices=PRUNERS, default="asha",
                   help="stop trials early on test accuracy per epoch (default asha: successive halving)")  # fmt: skip
    p.add_argument("--parallel", type=int, default=0,
                   help="trials at a time on this machine, each on a GPU of its own where there are GPUs "
                        "(default: one per GPU, or 1 on a CPU machine)")  # fmt: skip
    p.add_argument("--storage", default="", metavar="URL",
                   help="where the study lives: an Optuna storage URL several machines reach (postgresql://...), "
                        "sqlite:///PATH or journal:PATH (Optuna's journal file); default SQLite in the runs folder")  # fmt: skip
    p.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help="seconds between a running trial's signs of life in the study (default 10); "
                        "a trial silent for 3x that, its sweep killed, is tried again")  # fmt: skip
    p.add_argument("--seeds", type=int, default=0, metavar="K",
                   help="then train the best --top completed trials with K seeds in all (their own run is the "
                        "first) and say whether the best is better than the next or within the noise; alone "
                        "(no --space): on the sweep as it stands")  # fmt: skip
    p.add_argument("--top", type=int, default=3, metavar="N", help="how many of the best trials --seeds re-runs (3)")
    p.add_argument("--status", action="store_true", help="print the study's trials table; start nothing")
    p.add_argument("--headless", action="store_true",
                   help="print a line per finished trial instead of the sweep screen (the default off a terminal)")  # fmt: skip
    p.add_argument("--watch", action="store_true",
                   help="open the sweep screen on a sweep that runs elsewhere (or has ended); start nothing")  # fmt: skip
    return p


Screen = Callable[[Path, "list[str] | None"], int]
"""The sweep screen (tui/sweep_app.py): on a sweep folder, starting the sweep with the command
line given, or (None) watching one."""


def sweep_main(argv: list[str], screen: Screen | None = None) -> int:
    """The sweep command; ``screen``: where there is a terminal (or a browser) to show it on."""
    args, base = parser().parse_known_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.name):
        return usage_error(f"sweep name {args.name!r}: letters, digits, '.', '_' and '-' only")
    runs_root = peek_option(base, "--runs-root", "runs")
    folder = Path(runs_root) / f"{args.name}.sweep"
    if args.status:
        return show_status(folder)
    if args.watch:
        return watch(folder, screen)
    if args.parallel == 0:
        args.parallel = max(1, len(gpu_ids())) if peek_option(base, "--device", "auto") != "cpu" else 1
    if args.trials < 1 or args.parallel < 1 or args.heartbeat < 1 or args.top < 1:
        return usage_error("--trials, --parallel, --heartbeat and --top must be at least 1")
    if args.seeds and not 2 <= args.seeds <= 100:
        return usage_error("--seeds must be between 2 and 100 (the trial's own run is the first seed)")
    if args.seeds and not args.space and not args.space_file:  # the seeds of a sweep as it stands
        return seeds_only(folder, args.seeds, args.top, args.parallel)
    if given := [a for a in base if a.split("=")[0] in NOT_IN_A_TRIAL]:
        return usage_error(f"{given[0].split('=')[0]} is the sweep's to set for each trial; leave it out")
    try:
        params = parse_space(args.space + (read_space_file(args.space_file) if args.space_file else []))
        check_space(params, base)
    except SpaceError as exc:
        return usage_error(str(exc))
    plan = SweepPlan(args.name, runs_root, params, base, args.trials, args.sampler, args.pruner, args.parallel,
                     args.storage, args.heartbeat)  # fmt: skip
    if (folder / PLAN_FILE).is_file():
        before = read_plan(folder)
        if before is None or (before.params, before.base) != (plan.params, plan.base):
            return usage_error(f"the sweep {args.name} exists with another space or other options "
                               f"({folder / PLAN_FILE}); give the same ones to go on, or another name")  # fmt: skip
    # The first folder this creates (the runs folder too, if new): removed again if the storage fails.
    created = next((f for f in reversed([folder, *folder.parents]) if not f.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        open_study_or_say(plan)  # a storage that cannot be reached: said now, nothing left behind
        atomic_write_json(folder / PLAN_FILE, plan.to_dict())
    except (OSError, StorageError) as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        return usage_error(str(exc) if isinstance(exc, StorageError) else f"cannot write {folder}: {first_line(exc)}")
    if screen is not None and not args.headless:
        return screen(folder, argv)
    from engine.sweep.table import trial_line

    code = Sweep(plan, lambda trial: print(trial_line(trial), flush=True)).run()
    code = show_status(folder) or code
    if code == 0 and args.seeds:
        return seeds_only(folder, args.seeds, args.top, args.parallel)
    return code


def seeds_only(folder: Path, seeds: int, top: int, parallel: int) -> int:
    """``--seeds K``: the best ``top`` completed trials with K seeds in all, then their table."""
    from dataclasses import replace

    from engine.sweep.seeds import SeedRuns, plan_seeds, seeds_table

    plan = read_plan(folder)
    if plan is None:
        return usage_error(f"no sweep in {folder}")
    plan = replace(plan, parallel=parallel)
    try:
        open_study_or_say(plan)
    except StorageError as exc:
        return usage_error(str(exc))
    chosen = plan_seeds(plan, seeds, top)
    if not chosen:
        return usage_error(f"the sweep {plan.name} has no completed trial to train with other seeds yet")
    code = SeedRuns(plan).run(chosen)
    print(f"sweep {plan.name}: the best {len(chosen)} trials over {seeds} seeds (mean ± sd of the best test accuracy)")
    for line in seeds_table(chosen, seeds):
        print(line)
    return code


def watch(folder: Path, screen: Screen | None) -> int:
    """``--watch``: the screen on an existing sweep. A sweep from before the screen existed, or
    one whose process was killed, gets its trials file written from the study first."""
    plan = read_plan(folder)
    if plan is None:
        return usage_error(f"no sweep in {folder}")
    if screen is None:
        return usage_error(f"--watch needs a terminal (or a browser: cifar-tui serve {folder})")
    from engine.sweep.snapshot import write_snapshot

    try:
        if not (folder / SNAPSHOT).is_file() or not _written_by_a_live_sweep(folder):
            write_snapshot(plan, open_study_or_say(plan), live=False)
    except StorageError as exc:
        return usage_error(str(exc))
    except OSError as exc:
        return usage_error(f"cannot write {folder / SNAPSHOT}: {first_line(exc)}")
    return screen(folder, None)


def _written_by_a_live_sweep(folder: Path) -> bool:
    try:
        data = json.loads((folder / SNAPSHOT).read_text())
        return bool(data["live"]) and same_process(int(data["pid"]), data.get("pid_started"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def read_plan(folder: Path) -> SweepPlan | None:
    try:
        return SweepPlan.from_dict(json.loads((folder / PLAN_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def show_status(folder: Path) -> int:
    """The trials table of the sweep in ``folder``, best first; exit 2 when there is none."""
    plan = read_plan(folder)
    if plan is None:
        print(f"cifar-tui: error: no sweep in {folder}", file=sys.stderr)
        return EXIT_USAGE
    from engine.sweep.table import best_first, trial_line
    from engine.sweep.trials import counted

    try:
        study = open_study_or_say(plan)
    except StorageError as exc:
        return usage_error(str(exc))
    trials = best_first(counted(study.get_trials(deepcopy=False)))
    print(f"sweep {plan.name}: {len(trials)} trials ({plan.trials} asked), sampler {plan.sampler}, "
          f"pruner {plan.pruner}")  # fmt: skip
    for trial in trials:
        print("  " + trial_line(trial))
    return 0
