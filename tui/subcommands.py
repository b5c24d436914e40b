"""``cifar-tui attach``, ``runs`` and ``export``: the commands on runs already on disk."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.options import OneLineParser, path_arg, usage_error
from engine.run.config import TrainConfig
from engine.run.rundir import CONFIG, EVENTS
from tui.launcher import run_app, served


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: what it was about and why."""
    name = str(exc.filename) if exc.filename is not None else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    return f"cannot use {shown!r}: {exc.strerror or exc}" if name else f"{exc.strerror or exc}"


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
        return usage_error(f"no runs under {args.runs_root}/ (start one, or give a run directory)")
    if not (run_dir / EVENTS).is_file():
        return usage_error(f"{run_dir} holds no run (no events.jsonl)")
    if not 0 < args.refresh <= 30:
        return usage_error("--refresh must be > 0 and <= 30")
    if not (sys.stdout.isatty() and sys.stdin.isatty()) and not served():
        return usage_error("attach needs a terminal (or a browser: cifar-tui serve)")
    from engine.session.attached import AttachedSession
    from tui.app import make_app

    cfg = _run_config(run_dir)
    return run_app(
        lambda guard: make_app(cfg, lambda _cfg: AttachedSession(run_dir), refresh_hz=args.refresh, guard=guard)
    )


def _run_config(run_dir: Path) -> TrainConfig:
    import json

    try:
        data = json.loads((run_dir / CONFIG).read_bytes())
        return TrainConfig.from_dict(data) if isinstance(data, dict) else TrainConfig()
    except Exception:  # a damaged config.json: the events still replay
        return TrainConfig()


def runs_main(argv: list[str]) -> int:
    p = OneLineParser(prog="cifar-tui runs", description="List the runs in the runs folder.")
    p.add_argument("--runs-root", default="runs", type=path_arg("--runs-root"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    from engine.run.summary import list_runs, runs_json
    from engine.run.wording import duration, percent

    root = Path(args.runs_root)
    if root.exists() and not root.is_dir():
        return usage_error(f"--runs-root {root} is not a folder")
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
        best = percent(r.best_accuracy, missing="--")
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
        return usage_error("say what to write: --csv, --tensorboard LOGDIR, or both")
    from engine.run.export import ExportError, export_csv, export_tensorboard

    run_dir = Path(args.run_dir)
    if not (run_dir / EVENTS).is_file():
        return usage_error(f"{run_dir} holds no run (no events.jsonl)")
    try:
        written = export_csv(run_dir, Path(args.out) if args.out else run_dir) if args.csv else []
        if args.tensorboard:
            written.append(export_tensorboard(run_dir, Path(args.tensorboard)))
    except ExportError as exc:
        return usage_error(str(exc))
    except OSError as exc:
        return usage_error(f"cannot write the export: {exc.strerror or exc}")
    except Exception as exc:  # a damaged run: say so, never a traceback
        return usage_error(f"cannot export {run_dir}: its files are damaged ({type(exc).__name__})")
    for path in written:
        print(path)
    return 0
