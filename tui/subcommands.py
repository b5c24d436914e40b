"""``cifar-tui attach``, ``runs`` and ``export``: the commands on runs already on disk."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.options import OneLineParser, path_arg, usage_error
from engine.run.catalog import RUN_ORDERS, find_runs, sort_runs
from engine.run.config import TrainConfig
from engine.run.rundir import CONFIG
from engine.run.summary import RunSummary
from tui.launcher import run_app, served


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: what it was about and why."""
    name = str(exc.filename) if exc.filename is not None else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    return f"cannot use {shown!r}: {exc.strerror or exc}" if name else f"{exc.strerror or exc}"


def attach_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui attach", description="Open the dashboard on a live or finished run.")
    p.add_argument("run_dir", nargs="?", metavar="RUN", help="run directory or a run's name (default: the live "
                   "run, or the newest; runs are found in ./runs and in the index of runs you started)")  # fmt: skip
    p.add_argument("--runs-root", type=path_arg("--runs-root"), help="look only in this runs folder")
    p.add_argument("--refresh", type=float, default=1.0)
    args = p.parse_args(argv)
    if not 0 < args.refresh <= 30:
        return usage_error("--refresh must be > 0 and <= 30")
    from engine.run.catalog import NoSuchRun, choose_run

    terminal = sys.stdout.isatty() and sys.stdin.isatty()
    try:
        run_dir = choose_run(args.run_dir, [Path(args.runs_root)] if args.runs_root else None,
                             ask=ask_which if terminal and not served() else None)  # fmt: skip
    except NoSuchRun as exc:
        return usage_error(str(exc))
    if not terminal and not served():
        return usage_error("attach needs a terminal (or a browser: cifar-tui serve)")
    from engine.session.attached import AttachedSession
    from tui.app import make_app

    cfg = _run_config(run_dir)
    return run_app(
        lambda guard: make_app(cfg, lambda _cfg: AttachedSession(run_dir), refresh_hz=args.refresh, guard=guard)
    )


def ask_which(runs: list[RunSummary]) -> RunSummary | None:
    """Several live runs and no name given: list them and read a number (None: none chosen)."""
    for i, r in enumerate(runs, 1):
        print(f"  {i}. {r.title}  ({r.state}, epoch {r.epochs_done}/{r.epochs})  {r.path}")
    try:
        answer = input(f"attach to which run? [1-{len(runs)}] ").strip()
    except EOFError:
        return None
    return runs[int(answer) - 1] if answer.isdigit() and 1 <= int(answer) <= len(runs) else None


def _run_config(run_dir: Path) -> TrainConfig:
    import json

    try:
        data = json.loads((run_dir / CONFIG).read_bytes())
        return TrainConfig.from_dict(data) if isinstance(data, dict) else TrainConfig()
    except Exception:  # a damaged config.json: the events still replay
        return TrainConfig()


def runs_main(argv: list[str]) -> int:
    from engine.run.index import index_path

    p = OneLineParser(prog="cifar-tui runs", description="List your runs: those in ./runs and every run you "
                      f"started elsewhere (kept in an index: {index_path()}).")  # fmt: skip
    p.add_argument("--runs-root", type=path_arg("--runs-root"), help="list only this runs folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--all", action="store_true", help="archived runs too")
    p.add_argument("--state", choices=("running", "paused", "finished", "stopped", "pruned", "failed", "damaged"),
                   help="only runs in this state")  # fmt: skip
    p.add_argument("--recipe", help="only runs of this recipe")
    p.add_argument("--data", help="only runs whose data contains this text")
    p.add_argument("--match", metavar="TEXT", help="only runs with TEXT in their name, tags or notes")
    p.add_argument("--sort", choices=sorted(RUN_ORDERS), default="started", help="order (default: started)")
    p.add_argument("--reverse", action="store_true", help="reverse the order")
    args = p.parse_args(argv)
    from engine.run.summary import runs_json
    from engine.run.wording import distinct, duration, percent

    root = Path(args.runs_root) if args.runs_root else None
    if root is not None and root.exists() and not root.is_dir():
        return usage_error(f"--runs-root {root} is not a folder")
    runs = sort_runs([r for r in find_runs([root] if root else None) if _wanted(r, args)], args.sort,
                     reverse=args.reverse)  # fmt: skip
    if args.json:
        print(runs_json(runs))
        return 0
    if not runs:
        print(f"no runs under {root}/" if root else "no runs yet (or none that match)")
        return 0
    names = distinct([r.title for r in runs], 32)
    print(f"{'name':<32} {'state':<9} {'recipe':<9} {'data':<14} {'epochs':>7} {'best acc':>8}  {'started':<16} "
          f"{'duration':>8}  tags / folder")  # fmt: skip
    home = str(Path.home())
    for name, r in zip(names, runs, strict=True):
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
        data = r.data if len(r.data) <= 14 else "…" + r.data[-13:]
        where = r.path.replace(home, "~", 1) if r.path.startswith(home + "/") else r.path
        tags = " ".join(f"#{t}" for t in r.tags) + ("  [archived]" if r.archived else "")
        print(f"{name:<32} {r.state:<9} {r.recipe:<9} {data:<14} {f'{r.epochs_done}/{r.epochs}':>7} "
              f"{percent(r.best_accuracy, missing='--'):>8}  {started:<16} {duration(r.duration):>8}  "
              f"{(tags + '  ') if tags else ''}{where}")  # fmt: skip
    return 0


def _wanted(r: RunSummary, args: argparse.Namespace) -> bool:
    return (
        (args.all or not r.archived)
        and (args.state is None or r.state == args.state)
        and (args.recipe is None or r.recipe == args.recipe)
        and (args.data is None or args.data.lower() in r.data.lower())
        and (args.match is None or r.matches(args.match))
    )


def export_sweep(folder: Path, out: Path | None, csv: bool) -> tuple[Path | None, list[Path]]:
    """A sweep's part of an export: its trials table (with --csv) and its best trial's run."""
    from engine.run.catalog import NoSuchRun
    from engine.sweep.cli import read_plan
    from engine.sweep.table import best_run, write_trials_csv

    plan = read_plan(folder)
    if plan is None:
        raise NoSuchRun(f"{folder}: its sweep.json is damaged")
    if out:
        out.mkdir(parents=True, exist_ok=True)
    tables = [write_trials_csv(plan, (out or folder) / "trials.csv")] if csv else []
    best = best_run(plan)
    if best is None:
        print(f"sweep {plan.name}: no trial has completed yet; only its table is written", file=sys.stderr)
    return best, tables


def export_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui export", description="Write runs' metrics for other tools: CSV, TensorBoard "
                      "(scalars, the config as HParams, the last confusion matrix).")  # fmt: skip
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories or run names; a sweep's folder (RUNS/NAME.sweep): its trials table "
                        "(trials.csv, with --csv) and its best trial's run")  # fmt: skip
    p.add_argument(
        "--csv",
        action="store_true",
        help="steps.csv, epochs.csv and steering.csv (in --out, default: each run directory)",
    )
    p.add_argument("--out", type=path_arg("--out"), help="folder for the CSV files (several runs: OUT/<run name>/)")
    p.add_argument("--tensorboard", type=path_arg("--tensorboard"), metavar="LOGDIR", help="TensorBoard event files in LOGDIR/<run name>/ "
                   "(needs: pip install tensorboard); then: tensorboard --logdir LOGDIR")  # fmt: skip
    p.add_argument("--mistakes", type=path_arg("--mistakes"), metavar="FILE.png",
                   help="the latest evaluation's most confident mistakes as one labelled picture (one run)")  # fmt: skip
    p.add_argument("--batch", type=path_arg("--batch"), metavar="FILE.png",
                   help="a training batch before and after augmentation as one labelled picture (one run)")  # fmt: skip
    args: argparse.Namespace = p.parse_args(argv)
    if not (args.csv or args.tensorboard or args.mistakes or args.batch):
        return usage_error("say what to write: --csv, --tensorboard LOGDIR, --mistakes FILE.png, --batch FILE.png")
    if (args.mistakes or args.batch) and len(args.runs) > 1:
        return usage_error("--mistakes and --batch take one run")
    from engine.run.catalog import NoSuchRun, resolve_run
    from engine.run.errors import UserError
    from engine.run.export import ExportError, export_csv, export_name, export_tensorboard
    from engine.run.gallery_export import NoGallery, export_mistakes
    from engine.session.batch_view import export_batch

    written: list[Path] = []
    try:
        run_dirs = []
        for text in args.runs:
            if (Path(text) / "sweep.json").is_file():
                best, tables = export_sweep(Path(text), Path(args.out) if args.out else None, args.csv)
                written += tables
                run_dirs += [best] if best else []
            else:
                run_dirs.append(resolve_run(text))
    except NoSuchRun as exc:
        return usage_error(str(exc))
    except OSError as exc:
        return usage_error(f"cannot write the export: {exc.strerror or exc}")
    for run_dir in run_dirs:
        out = (
            run_dir if not args.out else Path(args.out) / export_name(run_dir) if len(run_dirs) > 1 else Path(args.out)
        )
        try:
            written += export_csv(run_dir, out) if args.csv else []
            if args.tensorboard:
                written.append(export_tensorboard(run_dir, Path(args.tensorboard)))
            if args.mistakes:
                written.append(export_mistakes(run_dir, Path(args.mistakes)))
            if args.batch:
                written.append(export_batch(run_dir, Path(args.batch)))
        except (ExportError, NoGallery, UserError) as exc:
            return usage_error(str(exc))
        except OSError as exc:
            return usage_error(f"cannot write the export of {run_dir}: {exc.strerror or exc}")
        except Exception as exc:  # a damaged run: say so, never a traceback
            return usage_error(f"cannot export {run_dir}: its files are damaged ({type(exc).__name__})")
    for path in written:
        print(path)
    if args.tensorboard:
        print(f"compare them: tensorboard --logdir {args.tensorboard}", file=sys.stderr)
    return 0
