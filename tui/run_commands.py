"""Commands on one run without opening a dashboard: ``stop|pause|resume|save|evaluate`` and
``steer`` (through the run's control socket, answered by what the trainer did), ``label``,
``archive``, ``delete``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.options import OneLineParser, usage_error
from engine.run import events as ev
from engine.run import steering as st
from engine.run.catalog import NoSuchRun, choose_run
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.controls import Command
from engine.run.fileio import clear_torn_writes
from engine.run.index import forget
from engine.run.label import check_name, check_notes, check_tags, read_label, run_title, write_label
from engine.run.rundir import CHECKPOINTS, EVENTS, holds_run, live_owner
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
STEER_COMMAND = "steer"
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
    _timeout_option(p)
    args = p.parse_args(argv)
    run_dir = _live_run(args, command)
    if isinstance(run_dir, int):
        return run_dir
    # The answer is awaited from where the log stood *before* the state is read: a pause the
    # trainer makes between the two (another command's) is then either in the summary or in what
    # this command waits on; from the send on, it could be in neither, and a paused trainer sent
    # "pause" answers nothing.
    offset = _events_size(run_dir)
    state = summary.state if (summary := safe_summary(run_dir)) else "unknown"
    if (command, state) in (("pause", "paused"), ("resume", "running")):
        print(f"{run_title(run_dir)}: already {state}")
        return 0
    sent_at = _send(run_dir, [(sent, FROM_THE_COMMAND_LINE if command == "stop" else "", None)])
    if isinstance(sent_at, str):
        return usage_error(sent_at)

    def confirms(e: ev.Event) -> bool:  # a request's event, not a scheduled one
        return isinstance(e, confirming) and getattr(e, "reason", "request") in ("request", "stopped")

    events = _await(run_dir, offset, confirms, 1, args.timeout)
    if not events:
        return _no_answer(command, run_dir, args.timeout)
    lines = event_lines(events[0]) or [("info", f"{command}: done")]
    for _level, text in lines:
        print(f"{run_title(run_dir)}: {text}")
    return 0


def steer_main(argv: list[str]) -> int:
    p = _run_parser("steer", "Change a running training at its next batch: the LR multiplier, its length, "
                    "its stop rules; say what the trainer did.")  # fmt: skip
    p.add_argument("--lr-scale", metavar="X", help="set the multiplier on the scheduled LR (0.5, x2) or change it "
                   "(*2, /2); the schedule goes on under it")  # fmt: skip
    p.add_argument("--epochs", metavar="N|+N|-N", help="train N epochs in all (or N more/fewer); the rest of the "
                   "schedule is re-planned from here")  # fmt: skip
    p.add_argument("--early-stop", metavar="patience=N[,min-delta=D]|off", help="end the run after N epochs "
                   "without a test-accuracy gain of more than D points")  # fmt: skip
    p.add_argument("--target-accuracy", metavar="PERCENT|off", help="end the run once test accuracy reaches this")
    _timeout_option(p)
    args = p.parse_args(argv)
    asked = {st.LR_SCALE: args.lr_scale, st.EPOCHS: args.epochs, st.EARLY_STOP: args.early_stop,
             st.TARGET: args.target_accuracy}  # fmt: skip
    try:
        acts = [st.PARSERS[what](text, st.COMMAND_LINE) for what, text in asked.items() if text is not None]
    except ValueError as exc:
        return usage_error(str(exc))
    if not acts:
        return usage_error("say what to change: --lr-scale, --epochs, --early-stop or --target-accuracy")
    run_dir = _live_run(args, "steer")
    if isinstance(run_dir, int):
        return run_dir
    # Each act carries an id of its own, and the answers are the events that carry them back: two
    # steer commands at once each read the trainer's answer to their own act, not the other's.
    ours = uuid.uuid4().hex[:12]
    acts = [replace(act, request=f"{ours}-{i}") for i, act in enumerate(acts)]
    requests = {act.request for act in acts}
    offset = _send(run_dir, [(Command.STEER, "", act) for act in acts])
    if isinstance(offset, str):
        return usage_error(offset)
    events = _await(run_dir, offset, lambda e: isinstance(e, ev.Steered) and e.request in requests, len(acts),
                    args.timeout)  # fmt: skip
    for event in events:
        for _level, text in event_lines(event):
            print(f"{run_title(run_dir)}: {text}")
    if len(events) < len(acts) or not all(isinstance(e, ev.Steered) for e in events):
        return 1 if events else _no_answer("steer", run_dir, args.timeout)
    return 1 if any(isinstance(e, ev.Steered) and e.refused for e in events) else 0


def _timeout_option(p: OneLineParser) -> None:
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="how long to wait for the trainer to act (default 120)")  # fmt: skip


def _live_run(args: argparse.Namespace, command: str) -> Path | int:
    """The live run the command acts on, or the exit code of a one-line refusal."""
    if not args.timeout > 0:
        return usage_error("--timeout must be > 0")
    try:
        run_dir = choose_run(args.run, _roots(args), live_only=True)
    except NoSuchRun as exc:
        return usage_error(str(exc))
    if not trainer_alive(run_dir):
        state = summary.state if (summary := safe_summary(run_dir)) else "unknown"
        again = f"; to train it on: cifar-tui --resume {run_title(run_dir)}" if command == "resume" else ""
        return usage_error(f"{run_dir} is not running ({state}); nothing to {command}{again}")
    return run_dir


def _send(run_dir: Path, messages: list[tuple[Command, str, st.SteerAct | None]]) -> int | str:
    """Send commands over the run's control socket: where its events.jsonl stood before them
    (what follows is the trainer's answer), or a one-line reason they were not taken."""
    try:
        socket_file = Path(json.loads((run_dir / TRAINER_FILE).read_text())["socket"])
        offset = (run_dir / EVENTS).stat().st_size
        client = ControlClient(socket_file)
        try:
            replies = [client.send(command, cause, act) for command, cause, act in messages]
        finally:
            client.close()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot reach the trainer of {run_dir}: {getattr(exc, 'strerror', None) or exc}"
    for reply in replies:
        if not reply.get("ok"):
            return f"the trainer of {run_dir} refused: {reply.get('error', 'no reason given')}"
    return offset


def _events_size(run_dir: Path) -> int:
    try:
        return (run_dir / EVENTS).stat().st_size
    except OSError:
        return 0


def _no_answer(command: str, run_dir: Path, timeout: float) -> int:
    print(f"cifar-tui: {command} was sent to {run_dir}, but the trainer has not acted on it within "
          f"{timeout:g} s (a long batch?); watch it with: cifar-tui attach {run_dir}", file=sys.stderr)  # fmt: skip
    return 1


def _await(run_dir: Path, offset: int, wanted: Callable[[ev.Event], bool], count: int,
           timeout: float) -> list[ev.Event]:  # fmt: skip
    """The first ``count`` wanted events written after ``offset``; fewer after ``timeout`` seconds,
    and the run's end instead (its Finished or Failed is what happened) if it ends first."""
    import time

    from engine.session.attached import EventTail

    found: list[ev.Event] = []
    deadline = time.monotonic() + timeout
    with EventTail(run_dir, offset) as tail:
        while time.monotonic() < deadline:
            alive = trainer_alive(run_dir)
            for event in tail.read():
                if wanted(event):
                    found.append(event)
                    if len(found) == count:
                        return found
                elif isinstance(event, ev.Finished | ev.Failed):
                    return [*found, event]
            if not alive:
                return found
            time.sleep(0.1)
    return found


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
        if _idle(run_dir):  # nothing writes there now
            clear_torn_writes(run_dir / CHECKPOINTS)
        try:
            write_label(run_dir, label)
        except OSError as exc:
            return usage_error(f"cannot write the label of {run_dir}: {exc.strerror or exc}")
    print(f"{run_dir}\n  name  {label.name or run_dir.name}\n  tags  {', '.join(label.tags) or '--'}\n"
          f"  notes {label.notes or '--'}" + ("\n  archived" if label.archived else ""))  # fmt: skip
    return 0


def _idle(run_dir: Path) -> bool:
    """No trainer runs in ``run_dir`` and none holds it."""
    return not trainer_alive(run_dir) and live_owner(run_dir) is None


def _idle_run(args: argparse.Namespace, doing: str) -> Path | str:
    """The named run when nothing trains in it; else a one-line reason."""
    if args.run is None:
        return f"name the run to {doing} (a run directory or a run's name)"
    try:
        run_dir = choose_run(args.run, _roots(args))
    except NoSuchRun as exc:
        return str(exc)
    if not _idle(run_dir):
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
    clear_torn_writes(run_dir / CHECKPOINTS)  # (an idle run: what a killed save left goes)
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
