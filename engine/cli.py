"""Command-line options -> TrainConfig, and the headless runner (plain lines, no UI).

Importing this module does not import torch; only running training does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO

from engine.ranks.plan import distributed_problem, launch_values, launched, restarted_argv
from engine.run import console, stop_signals
from engine.run import events as ev
from engine.run.config import OPTIMIZERS, RECIPES, SCHEDULES, TrainConfig, from_recipe, path_kind
from engine.run.controls import Controls
from engine.run.errors import EXIT_CRASH, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, ConfigError, UserError, end_code
from engine.run.rundir import check_target
from engine.run.wording import event_lines, model_phrase, per_class_rows, plural
from engine.session.launch import preflight, run_distributed


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        # Every command speaks as one tool: "cifar-tui: error: ...", whichever subcommand it was.
        self.exit(EXIT_USAGE, f"cifar-tui: error: {message} (see: {self.prog} --help)\n")


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {value!r}")


def path_arg(option: str) -> Callable[[str], str]:
    """An argparse ``type`` for a path: refused in one line when the system cannot even look it
    up (a name too long, a NUL, a loop of links); whether it exists is the command's business."""

    def check(value: str) -> str:
        try:
            path_kind(option, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{option}: ")) from exc
        return value

    return check


DASHBOARD_EPILOG = """\
commands:
  cifar-tui [OPTIONS]              train with the live dashboard (--headless: plain lines)
  cifar-tui attach [RUN_DIR]       the dashboard on a live or finished run (default: the latest)
  cifar-tui runs [--json]          list the runs under --runs-root
  cifar-tui export RUN_DIR --csv   write steps.csv and epochs.csv (--tensorboard LOGDIR: event files)
  cifar-tui serve [RUN_DIR]        the dashboard in a browser, private (token), http://127.0.0.1:8000

dashboard keys:
  p pause/resume   s save a checkpoint   e evaluate now   c confusion matrix   v plots
  l log-scale loss   m smoothing   r runs (t: compare configs)   x stop training
  d detach   q quit (asks while training)   ? help

exit codes:
  0 completed   1 training crashed or diverged, or its final checkpoint not saved
  2 bad input   130 stopped early
  129 terminal lost or SIGHUP   143 SIGTERM

examples:
  cifar-tui --data demo                         offline demo data, trains at once
  cifar-tui --recipe fast --headless            the fast recipe, plain log lines
  cifar-tui --data ~/pets --epochs 5 --detach   your own ImageFolder, in the background
"""

ENGINE_EPILOG = """\
exit codes: 0 completed, 1 training crashed or diverged (or its final checkpoint could not be
saved), 2 bad input, 130 stopped early,
128+signal for SIGTERM (143) and SIGHUP (129). The dashboard is `cifar-tui`.
"""


def recipe_defaults(recipe: str) -> dict[str, Any]:
    """Every training option's value under ``recipe`` (the dataclass defaults, then the recipe)."""
    from dataclasses import fields

    base = {f.name: f.default for f in fields(TrainConfig)}
    return {**base, **RECIPES.get(recipe, {})}


def _peek_recipe(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--recipe" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--recipe="):
            return arg.split("=", 1)[1]
    return "tutorial"


def build_parser(
    argv: Sequence[str] = (), *, prog: str = "cifar-tui", dashboard: bool = True
) -> argparse.ArgumentParser:
    """The options; help shows each one's value under the recipe named in ``argv`` (tutorial)."""
    recipe = _peek_recipe(argv)
    p = OneLineParser(
        prog=prog,
        description=(
            "Train an image classifier (ResNet-18 on CIFAR-10 by default)"
            + (" and watch it live." if dashboard else ", headless (plain lines).")
            + f" Defaults shown are the {recipe!r} recipe's; an explicit option overrides it."
        ),
        epilog=DASHBOARD_EPILOG if dashboard else ENGINE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if dashboard:
        p.add_argument(
            "--headless",
            action="store_true",
            help="no dashboard: plain log lines (also used when stdout is not a terminal)",
        )
    p.add_argument("--recipe", default="tutorial", help=f"preset: {', '.join(RECIPES)} (default: tutorial)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help="cifar10, demo (built-in, offline; implies --weights none) or PATH to an ImageFolder tree "
        "with train/ and test/",
    )
    g.add_argument("--data-dir", help="where CIFAR-10 is downloaded and cached")
    g.add_argument("--image-size", type=int, help="resize folder images to this square size")
    g.add_argument("--train-limit", type=int, help="use a seeded random subset of this many training images")
    g.add_argument("--test-limit", type=int, help="use a seeded random subset of this many test images")
    g.add_argument(
        "--loader",
        help="tensor (batch augmentation on the device), dataloader (the seed's) or auto "
        "(the seed's DataLoader for the tutorial recipe on a CPU, tensor elsewhere)",
    )
    g.add_argument("--workers", type=int, help="DataLoader workers (dataloader only, default 2)")
    g = p.add_argument_group("augmentation (tensor loader)")
    g.add_argument("--pad-mode", help="border for the 4-pixel random translation: zeros (the seed's) or reflect")
    g.add_argument("--flip", help="random, alternate (each image flipped every other epoch) or off")
    g.add_argument("--cutout", type=int, metavar="PIXELS", help="blank a square this size in each image; 0 = off")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="torchvision model name")
    g.add_argument("--weights", help="imagenet (download), none, or PATH to a state dict file")
    g.add_argument("--stem", help="imagenet (7x7/2 + max-pool) or cifar (3x3/1, no pool)")
    g.add_argument("--zero-init-residual", type=_flag, metavar="on|off",
                   help="each residual block starts as its shortcut (last BatchNorm scale 0; from scratch)")  # fmt: skip
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", type=_flag, metavar="on|off")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--decay-norms", type=_flag, metavar="on|off", help="weight decay on norm layers and biases too")
    g.add_argument("--optimizer", help=f"{', '.join(OPTIMIZERS)}")
    g.add_argument("--schedule", help=f"{', '.join(SCHEDULES)}")
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--amp", type=_flag, metavar="on|off", help="bf16 autocast on CUDA")
    g.add_argument("--channels-last", type=_flag, metavar="on|off")
    g.add_argument("--sync-bn", type=_flag, metavar="on|off",
                   help="with --nproc on GPUs: BatchNorm over the whole global batch (SyncBatchNorm)")  # fmt: skip
    g.add_argument("--compile", type=_flag, metavar="on|off",
                   help="torch.compile the model (CUDA; drops the ragged last batch: one shape, one compile)")  # fmt: skip
    g.add_argument("--tta", type=_flag, metavar="on|off", help="flip test-time augmentation at evaluation")
    g.add_argument("--tta-translate", type=_flag, metavar="on|off", help="also average over 1-pixel shifts")
    g.add_argument("--drop-last", type=_flag, metavar="on|off", help="drop each epoch's ragged last batch")
    g.add_argument("--ema", type=float, metavar="DECAY", help="evaluate an EMA of the weights (e.g. 0.999); 0 = off")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    g = p.add_argument_group("run")
    g.add_argument("--run-dir", help="run directory")
    g.add_argument("--runs-root", help="folder for new run directories")
    g.add_argument(
        "--resume", metavar="CHECKPOINT", help="continue from a checkpoint (same epoch, step and LR schedule)"
    )
    g.add_argument(
        "--overwrite", action="store_true", default=None, help="replace a run directory that already holds a run"
    )
    g.add_argument("--keep", type=int, help="keep the newest N step checkpoints besides last.pt and best.pt")
    g.add_argument("--save-wait", type=float, metavar="SECONDS",
                   help="when the final checkpoint does not fit (disk full), wait this long for room, "
                        "retrying every 10 s (default 1800; 0: do not wait)")  # fmt: skip
    g.add_argument("--log-every", type=int, help="print the running loss every N batches")
    g.add_argument("--progress-hz", type=float, help="progress events per second at most")
    g.add_argument("--nproc", default="1", metavar="N|auto",
                   help="data-parallel processes on this machine (torchrun; auto: one per GPU); "
                        "--batch-size stays the global batch (default 1)")  # fmt: skip
    g.add_argument("--rank-timeout", type=float, metavar="SECONDS",
                   help="with --nproc: a process silent this long fails the run instead of hanging it (default 300)")  # fmt: skip
    g.add_argument("--max-restarts", type=int, default=0, metavar="N",
                   help="with --nproc: restart all processes up to N times after one fails, resuming from "
                        "the run's last checkpoint (default 0)")  # fmt: skip
    if dashboard:
        g = p.add_argument_group("dashboard")
        g.add_argument("--refresh", type=float, default=1.0, help="plot redraws per second at most (default 1)")
        g.add_argument(
            "--detach", action="store_true", help="train in the background; reconnect with: cifar-tui attach"
        )
        g.add_argument(
            "--notify",
            type=_flag,
            default=True,
            metavar="on|off",
            help="bell and desktop notification (OSC 9/777, forwarded over SSH) when a run ends (default on)",
        )
        g.add_argument("--on-hangup", choices=("stop", "detach"), default="stop",
                       help="when the terminal goes away (SSH drop): save and stop training (default), "
                            "or keep it running in the background")  # fmt: skip
    _show_defaults(p, recipe_defaults(recipe))
    return p


_SPECIAL_DEFAULTS = {"data_dir": "~/.cache/cifar-tui/data", "train_limit": "all", "test_limit": "all",
                     "run_dir": "a new folder under --runs-root", "ema": "off"}  # fmt: skip


def _show_defaults(parser: argparse.ArgumentParser, values: dict[str, Any]) -> None:
    """Append '(default: X)' with the recipe's value to each training option's help."""
    for action in parser._actions:
        if action.dest not in values or action.dest in ("resume", "overwrite") or "default" in (action.help or ""):
            continue
        value = values[action.dest]
        if action.dest in _SPECIAL_DEFAULTS and value in ("", 0, None):
            shown: object = _SPECIAL_DEFAULTS[action.dest]
        elif isinstance(value, bool):
            shown = "on" if value else "off"
        else:
            shown = value if value not in ("", None) else "none"
        action.help = f"{action.help or ''} (default: {shown})".strip().replace("%", "%%")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe's config with the explicitly given options on top; ConfigError if invalid.
    Options that are not training settings (--headless, --refresh, --detach...) are left out."""
    fields = set(TrainConfig.__dataclass_fields__) - {"recipe"}
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return from_recipe(args.recipe, **given)


def tolerant_output() -> None:
    """Printing never fails and never ends a run: not on a file name that is not valid UTF-8,
    nor on a closed pipe or a full disk (engine/run/console.py)."""
    console.install()


class LinePrinter:
    """Event sink printing one plain line per meaningful event: reads well in a log file."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.last_status = ""

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, ev.Status):
            if (
                e.message
                and e.state not in ("training", "evaluating", "saving", "waiting_for_room", "failed")
                and e.message != self.last_status
            ):
                self.line(f"[{e.state}] {e.message}")
                self.last_status = e.message
        elif isinstance(e, ev.RunStarted):
            c = e.config
            self.line(
                f"recipe {c['recipe']} | {model_phrase(c)} | batch {c['batch_size']} "
                f"| {c['optimizer']} lr {c['lr']:g} momentum {c['momentum']:g} | {plural(int(c['epochs']), 'epoch')}"
            )
            cuda = f", CUDA {e.cuda_version}" if e.cuda_version and e.device.startswith("cuda") else ""
            ranks = f" | {e.world_size} processes (data-parallel)" if e.world_size > 1 else ""
            self.line(f"device {e.device} ({e.device_name}) | torch {e.torch_version}{cuda} | {e.num_threads} threads"
                      f"{ranks}")  # fmt: skip
            self.line(
                f"data {e.data_source}: {e.train_size} train, {e.test_size} test, {len(e.class_names)} classes "
                f"| loader {e.loader} | {e.steps_per_epoch} steps/epoch"
            )
        elif isinstance(e, ev.Progress) and e.interval_loss is not None:
            self.line(f"[{e.epoch + 1}, {e.step:5d}] loss: {e.interval_loss:.3f}")  # the seed's own format
        if not isinstance(e, ev.Failed):  # the caller prints a failure's one line
            for level, text in event_lines(e):
                self.line(text if level == "info" else f"[{level}] {text}")


def per_class_table(evaluation: ev.Evaluation) -> list[str]:
    width = max(len(n) for n in evaluation.class_names)
    return [f"  {name:<{width}}  {100 * acc:6.2f}%  {mark}".rstrip() for name, acc, mark in per_class_rows(evaluation)]


class _StoppedInSetup(BaseException):
    """Raised from the signal handler to leave a download or decode that has nothing to save."""


def run_headless(cfg: TrainConfig, out: TextIO | None = None) -> int:
    """Train in this process, printing plain lines. Returns the exit code.

    Ctrl-C, SIGTERM and SIGHUP stop at the next batch boundary after saving a
    checkpoint; a second signal aborts at once.
    """
    from engine.train.trainer import Trainer

    controls = Controls()
    printer = LinePrinter(out)
    final: list[ev.Evaluation] = []
    signals: list[int] = []

    failures: list[ev.Failed] = []

    def sink(e: ev.Event) -> None:
        printer(e)
        if isinstance(e, ev.Evaluation):
            final[:] = [e]
        elif isinstance(e, ev.Failed):
            failures.append(e)

    trainer = Trainer(cfg, sink, controls)

    owner = os.getpid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            return  # a DataLoader worker that inherited the handler: its parent speaks for it
        name = signal.Signals(signum).name
        if controls.waiting_for_room:  # the run waits for disk room to save its end: a signal gives that up
            if not signals:  # (its exit code: 1, the run's end lost)
                signals.append(signum)
            controls.stop(save=True, cause=name)
            printer.line(f"[signal] {name}: giving up the final checkpoint")
            return
        if signals:
            raise KeyboardInterrupt
        signals.append(signum)
        controls.stop(save=True, cause=name)
        if trainer.end_if_not_started(name):
            raise _StoppedInSetup  # downloading or decoding: nothing to save, leave now
        printer.line(f"[signal] {name}: saving a checkpoint and stopping at the next batch")

    forget_output = console.on_failure(
        lambda name, why: trainer.emit(ev.Log(console.failure_note(name, why), level="warning"))
    )
    try:
        with stop_signals.handled(on_signal):
            finished = trainer.run()
    except _StoppedInSetup:
        return 128 + signals[0]
    except UserError as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cifar-tui: interrupted", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except Exception as exc:  # the traceback is in events.jsonl; keep the terminal readable
        why = failures[-1].message if failures else f"{type(exc).__name__}: {exc}"
        print(f"cifar-tui: training failed: {why}", file=sys.stderr, flush=True)
        return EXIT_CRASH
    finally:
        forget_output()
    if final and finished.reason == "completed":
        printer.line("per-class test accuracy:")
        for row in per_class_table(final[0]):
            printer.line(row)
    if launched():  # the run ended as planned (its end saved or not): the launcher reports how, from
        return EXIT_OK  # the run's last event; a rank's failure here would make torchrun restart the group
    if signals and not finished.unsaved:
        return 128 + signals[0]  # the shell convention: 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    return end_code(finished)


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
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = restarted_argv(argv)
    args = build_parser(argv, prog="python -m engine", dashboard=False).parse_args(argv)
    try:
        cfg, nproc = launch_plan(args, check_run_dir=False)  # one process: the trainer checks it
    except (UserError, ValueError) as exc:
        print(f"cifar-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if nproc > 1 and not launched():
        return run_distributed(nproc, argv, cfg, args.max_restarts)
    started = time.time()
    code = run_headless(cfg)
    if launched() and (code == EXIT_STOPPED or code >= 128):
        return EXIT_OK  # a stop is not a rank failing: the launcher reports it (exit_code_of_run)
    if code == EXIT_CRASH:
        print(f"(after {time.time() - started:.0f}s; see events.jsonl in the run directory)", file=sys.stderr)
    return code
