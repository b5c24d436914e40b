"""Commands on one run without opening a dashboard: ``stop|pause|resume|save|evaluate`` (through
the run's control socket, answered by what the trainer did), ``label``, ``archive``, ``delete``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from engine.options import OneLineParser, usage_error
from engine.run import events as ev
from engine.run.catalog import NoSuchRun, choose_run
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.controls import Command
from engine.run.index import forget
from engine.run.label import check_name, check_notes, check_tags, read_label, write_label
from engine.run.rundir import EVENTS, holds_run, live_owner
from engine.run.summary import safe_summary
from engine.run.wording import event_lines

FROM_THE_COMMAND_LINE = "stopped from the command line"

# command: (what is sent, the event that says it happened, what the command does, in words)
CONTROL_COMMANDS: dict[str, tuple[Command, type[ev.Event], str]] = {
    "stop": (Command.STOP_SAVE, ev.Finished, "save a checkpoint and stop the run at the next batch"),
    "pause": (Command.PAUSE, ev.Paused, "pause the run at the next batch"),
    "resume": (Command.RESUME, ev.Resumed, "resume a paused run"),
    "save": (Command.SAVE, ev.CheckpointSaved, "save a checkpoint at the next batch"),
    "evaluate": (Command.EVALUATE, ev.Evaluation, "evaluate on the test set at the next batch"),
}
MANAGE_COMMANDS = ("label", "archive", "delete")


def _roots(args: argparse.Namespace) -> list[Path] | None:
    return [Path(args.runs_root)] if args.runs_root else None


def _run_parser(command: str, description: str) -> OneLineParser:
    p = OneLineParser(prog=f"cifar-tui {command}", description=description)
    p.add_argument("run", nargs="?", metavar="RUN", help="run directory, or a run's name or part of it "
                   "(default: the one live run)")  # fmt: skip
    p.add_argument("--runs-root", metavar="DIR", help="look only in this runs folder (default: ./runs and every "
                   "run you started, from the index)")  # fmt: skip
    return p


def control_main(command: str, argv: list[str]) -> int:
    sent, confirming, what = CONTROL_COMMANDS[command]
    p = _run_parser(command, what[0].upper() + what[1:] + ", and say what happened.")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for the trainer to act (default 120)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.timeout > 0:
        return usage_error("--timeout must be > 0")
    try:
        run_dir = choose_run(args.run, _roots(args), live_only=True)
    except NoSuchRun as exc:
        return usage_error(str(exc))
    summary = safe_summary(run_dir)
    state = summary.state if summary else "unknown"
    if not trainer_alive(run_dir):
        return usage_error(f"{run_dir} is not running ({state}); nothing to {command}")
    if (command, state) in (("pause", "paused"), ("resume", "running")):
        print(f"{run_dir}: already {state}")
        return 0
    try:
        socket_file = Path(json.loads((run_dir / TRAINER_FILE).read_text())["socket"])
        offset = (run_dir / EVENTS).stat().st_size
        client = ControlClient(socket_file)
        reply = client.send(sent, FROM_THE_COMMAND_LINE if command == "stop" else "")
        client.close()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return usage_error(f"cannot reach the trainer of {run_dir}: {getattr(exc, 'strerror', None) or exc}")
    if not reply.get("ok"):
        return usage_error(f"the trainer of {run_dir} refused: {reply.get('error', 'no reason given')}")
    event = _await(run_dir, offset, confirming, args.timeout)
    if event is None:
        print(f"cifar-tui: {command} was sent to {run_dir}, but the trainer has not acted on it within "
              f"{args.timeout:g} s (a long batch?); watch it with: cifar-tui attach {run_dir}", file=sys.stderr)  # fmt: skip
        return 1
    lines = event_lines(event) or [("info", f"{command}: done")]
    for _level, text in lines:
        print(f"{run_dir.name}: {text}")
    return 0


def _await(run_dir: Path, offset: int, kind: type[ev.Event], timeout: float) -> ev.Event | None:
    """The first ``kind`` event written after ``offset`` (a request's, not a scheduled one), or
    None after ``timeout`` seconds or once the trainer is gone without one."""
    import time

    from engine.session.attached import EventTail

    deadline = time.monotonic() + timeout
    with EventTail(run_dir, offset) as tail:
        while time.monotonic() < deadline:
            for event in tail.read():
                if isinstance(event, kind) and getattr(event, "reason", "request") in ("request", "stopped"):
                    return event
                if isinstance(event, ev.Finished | ev.Failed):
                    return event  # the run ended first: that is what happened
            if not trainer_alive(run_dir):
                return next((e for e in tail.read() if isinstance(e, kind | ev.Finished | ev.Failed)), None)
            time.sleep(0.1)
    return None


def label_main(argv: list[str]) -> int:
    p = _run_parser("label", "Show or change what a run is called: its name, tags and notes.")
    p.add_argument("--name", help="a new name (empty: the folder's name)")
    p.add_argument("--tags", metavar="A,B", help="replace the tags")
    p.add_argument("--add-tags", metavar="A,B", help="add tags")
    p.add_argument("--notes", metavar="TEXT", help="replace the notes")
    args = p.parse_args(argv)
    if args.run is None:
        return usage_error("name the run to label (a run directory or a run's name)")
    try:
        run_dir = choose_run(args.run, _roots(args))
        label = read_label(run_dir)
        if args.name is not None:
            label.name = check_name(args.name)
        if args.tags is not None:
            label.tags = check_tags(args.tags)
        if args.add_tags is not None:
            label.tags += [t for t in check_tags(args.add_tags) if t not in label.tags]
        if args.notes is not None:
            label.notes = check_notes(args.notes)
    except (NoSuchRun, ValueError) as exc:
        return usage_error(str(exc))
    if any(v is not None for v in (args.name, args.tags, args.add_tags, args.notes)):
        try:
            write_label(run_dir, label)
        except OSError as exc:
            return usage_error(f"cannot write the label of {run_dir}: {exc.strerror or exc}")
    print(f"{run_dir}\n  name  {label.name or run_dir.name}\n  tags  {', '.join(label.tags) or '--'}\n"
          f"  notes {label.notes or '--'}" + ("\n  archived" if label.archived else ""))  # fmt: skip
    return 0


def _idle_run(args: argparse.Namespace, doing: str) -> Path | str:
    """The named run when nothing trains in it; else a one-line reason."""
    if args.run is None:
        return f"name the run to {doing} (a run directory or a run's name)"
    try:
        run_dir = choose_run(args.run, _roots(args))
    except NoSuchRun as exc:
        return str(exc)
    if trainer_alive(run_dir) or live_owner(run_dir) is not None:
        return f"{run_dir} is live; stop it first (cifar-tui stop {run_dir}), a live run is never {doing}d"
    return run_dir


def archive_main(argv: list[str]) -> int:
    p = _run_parser(
        "archive", "Hide a finished run from the lists (cifar-tui runs --all shows it); nothing is removed."
    )
    p.add_argument("--undo", action="store_true", help="show it again")
    args = p.parse_args(argv)
    run_dir = _idle_run(args, "archive")
    if isinstance(run_dir, str):
        return usage_error(run_dir)
    label = read_label(run_dir)
    label.archived = not args.undo
    try:
        write_label(run_dir, label)
    except OSError as exc:
        return usage_error(f"cannot write the label of {run_dir}: {exc.strerror or exc}")
    print(f"{'unarchived' if args.undo else 'archived'} {run_dir}")
    return 0


def delete_main(argv: list[str]) -> int:
    p = _run_parser("delete", "Delete a run directory: events, checkpoints and all. Asks first.")
    p.add_argument("--yes", action="store_true", help="do not ask")
    args = p.parse_args(argv)
    run_dir = _idle_run(args, "delete")
    if isinstance(run_dir, str):
        return usage_error(run_dir)
    if not holds_run(run_dir):
        return usage_error(f"{run_dir} is not a cifar-tui run directory; not deleting it")
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file() and not f.is_symlink())
    checkpoints = len(list((run_dir / "checkpoints").glob("*.pt")))
    if not args.yes:
        if not sys.stdin.isatty():
            return usage_error(f"delete {run_dir}? say --yes (no terminal to ask on)")
        answer = input(f"delete {run_dir} ({size / 2**20:,.1f} MiB, {checkpoints} checkpoints)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    try:
        shutil.rmtree(run_dir)
    except OSError as exc:
        return usage_error(f"cannot delete {run_dir} completely: {exc.strerror or exc}")
    forget(run_dir)
    print(f"deleted {run_dir} ({size / 2**20:,.1f} MiB)")
    return 0
