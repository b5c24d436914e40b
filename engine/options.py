"""The training options of the command line: argparse -> TrainConfig.

Both front ends build on :func:`build_parser`: ``python -m engine`` as it is, the dashboard
(``tui/options.py``) with its own options around it. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from engine.run.choices import OPTIMIZERS, SCHEDULES
from engine.run.config import TrainConfig, from_recipe, path_kind
from engine.run.errors import EXIT_USAGE, ConfigError
from engine.run.recipes import RECIPES
from engine.run.steering import EARLY_STOP, TARGET, given, parse_early_stop_rule, parse_target_value


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage dump) and exits 2."""

    MULTILINE = frozenset({"notes"})
    """Options whose text may hold line breaks and tabs (free text); no other control character."""

    def error(self, message: str) -> NoReturn:
        # Every command speaks as one tool: "cifar-tui: error: ...", whichever subcommand it was.
        self.exit(EXIT_USAGE, f"cifar-tui: error: {message} (see: {self.prog} --help)\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:  # type: ignore[override]
        """Parsed as argparse does, then every string value checked once, here: a control character
        (a newline in --device, an escape) is refused before anything starts."""
        parsed, rest = super().parse_known_args(args, namespace)
        for dest, value in vars(parsed).items():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and (
                    bad := control_character(text, allow="\n\t" if dest in self.MULTILINE else "")
                ):
                    where = next((a.option_strings[-1] for a in self._actions if a.dest == dest and a.option_strings),
                                 dest.upper())  # fmt: skip
                    self.error(f"{where} {text!r} holds a control character ({bad!r}); type it without one")
        return parsed, rest


def control_character(text: str, allow: str = "") -> str:
    """The first control character in ``text`` (not in ``allow``), or ""."""
    return next((c for c in text if unicodedata.category(c) == "Cc" and c not in allow), "")


def on_off(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {value!r}")


def target_arg(value: str) -> float:
    """``--target-accuracy``: 93, 93% or 0.93; off."""
    try:
        return parse_target_value(given(value, TARGET))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def lr_find_arg(value: str) -> str:
    """``--lr-find`` (show), ``--lr-find use`` or ``--lr-find only``."""
    if value not in ("show", "use", "only"):
        raise argparse.ArgumentTypeError(f"expected use or only (or nothing), got {value!r}")
    return value


def early_stop_arg(value: str) -> str:
    """``--early-stop patience=N[,min-delta=D]`` (or off), checked here, kept as its text."""
    try:
        rule = parse_early_stop_rule(given(value, EARLY_STOP))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(rule) if rule else ""


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


def peek_option(argv: Sequence[str], option: str, default: str) -> str:
    """An option's value from a command line not parsed yet (``--recipe fast``, ``--recipe=fast``)."""
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return default


def _peek_recipe(argv: Sequence[str]) -> str:
    return peek_option(argv, "--recipe", "tutorial")


def build_parser(
    argv: Sequence[str] = (),
    *,
    prog: str = "python -m engine",
    what: str = ", headless (plain lines).",
    epilog: str = ENGINE_EPILOG,
    front_options: Callable[[argparse.ArgumentParser], None] | None = None,
    more_options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """The training options; help shows each one's value under the recipe named in ``argv``
    (tutorial). A front end adds its own options first (``front_options``) and last
    (``more_options``): ``tui/options.py``."""
    recipe = _peek_recipe(argv)
    p = OneLineParser(
        prog=prog,
        description=(
            "Train an image classifier (ResNet-18 on CIFAR-10 by default)"
            + what
            + f" Defaults shown are the {recipe!r} recipe's; an explicit option overrides it."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if front_options is not None:
        front_options(p)
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
        help="tensor (batch augmentation on the device), dataloader (the tutorial's) or auto "
        "(the tutorial's DataLoader for the tutorial recipe on a CPU, tensor elsewhere)",
    )
    g.add_argument("--workers", type=int, help="DataLoader workers (dataloader only, default 2)")
    g = p.add_argument_group("augmentation (tensor loader)")
    g.add_argument("--pad-mode", help="border for the 4-pixel random translation: zeros (the tutorial's) or reflect")
    g.add_argument("--flip", help="random, alternate (each image flipped every other epoch) or off")
    g.add_argument("--cutout", type=int, metavar="PIXELS", help="blank a square this size in each image; 0 = off")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="torchvision model name")
    g.add_argument("--weights", help="imagenet (download), none, or PATH to a state dict file")
    g.add_argument("--stem", help="imagenet (7x7/2 + max-pool) or cifar (3x3/1, no pool)")
    g.add_argument("--zero-init-residual", type=on_off, metavar="on|off",
                   help="each residual block starts as its shortcut (last BatchNorm scale 0; from scratch)")  # fmt: skip
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", type=on_off, metavar="on|off")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--decay-norms", type=on_off, metavar="on|off", help="weight decay on norm layers and biases too")
    g.add_argument("--optimizer", help=f"{', '.join(OPTIMIZERS)}")
    g.add_argument("--schedule", help=f"{', '.join(SCHEDULES)}")
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--amp", type=on_off, metavar="on|off", help="bf16 autocast on CUDA")
    g.add_argument("--channels-last", type=on_off, metavar="on|off")
    g.add_argument("--sync-bn", type=on_off, metavar="on|off",
                   help="with --nproc on GPUs: BatchNorm over the whole global batch (SyncBatchNorm)")  # fmt: skip
    g.add_argument("--compile", type=on_off, metavar="on|off",
                   help="torch.compile the model (CUDA; drops the ragged last batch: one shape, one compile)")  # fmt: skip
    g.add_argument("--tta", type=on_off, metavar="on|off", help="flip test-time augmentation at evaluation")
    g.add_argument("--tta-translate", type=on_off, metavar="on|off", help="also average over 1-pixel shifts")
    g.add_argument("--drop-last", type=on_off, metavar="on|off", help="drop each epoch's ragged last batch")
    g.add_argument("--ema", type=float, metavar="DECAY", help="evaluate an EMA of the weights (e.g. 0.999); 0 = off")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--eval-every", type=int, metavar="STEPS",
                   help="also evaluate every STEPS steps, for long epochs (default 0: at epoch ends only)")  # fmt: skip
    g.add_argument("--early-stop", type=early_stop_arg, metavar="patience=N[,min-delta=D]",
                   help="end the run (completed) after N epochs without a test-accuracy gain of more than D points; "
                        "changeable while it trains (default: off)")  # fmt: skip
    g.add_argument("--target-accuracy", type=target_arg, metavar="PERCENT",
                   help="end the run (completed) once test accuracy reaches this, e.g. 93 (default: off)")  # fmt: skip
    g.add_argument("--lr-find", nargs="?", const="show", type=lr_find_arg, metavar="use|only",
                   help="a learning-rate range test first (~100 steps, then everything is put back): show its "
                        "suggestion (the dashboard asks whether to use it), 'use' it, or 'only' run the test")  # fmt: skip
    g.add_argument("--lr-find-start", type=float, metavar="LR", help="the range test's first LR (default 1e-7)")
    g.add_argument("--lr-find-end", type=float, metavar="LR", help="its last LR (default 10)")
    g.add_argument("--lr-find-steps", type=int, metavar="N", help="its most steps (default 100)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    g = p.add_argument_group("run")
    g.add_argument("--run-dir", help="run directory")
    g.add_argument("--runs-root", help="folder for new run directories")
    g.add_argument("--name", help="what to call the run in lists (default: its folder's name); editable later")
    g.add_argument("--tags", metavar="A,B", help="tags for finding the run again (commas or spaces)")
    g.add_argument("--notes", metavar="TEXT", help="free text about the run")
    g.add_argument(
        "--resume",
        metavar="CHECKPOINT|RUN",
        help="continue from a checkpoint, or a run's last one (its folder or name): same epoch, step and LR schedule",
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
    if more_options is not None:
        more_options(p)
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
    if given.get("resume"):
        given["resume"] = resume_target(given["resume"])
    return from_recipe(args.recipe, **given)


def resume_target(text: str) -> str:
    """``--resume``'s checkpoint: a checkpoint file as given, or a run (its folder, or its name as
    the run commands take it) as its checkpoints/last.pt."""
    from pathlib import Path

    from engine.run.catalog import NoSuchRun, resolve_run
    from engine.run.rundir import CHECKPOINTS, LAST

    try:
        if Path(text).is_file():
            return text
        run = resolve_run(text)
    except (NoSuchRun, OSError):
        return text  # the config's own check says what is wrong with it
    last = run / CHECKPOINTS / LAST
    if not last.is_file():
        raise ConfigError(f"--resume: the run {text} has no checkpoint to resume (no {CHECKPOINTS}/{LAST})")
    return str(last)


def usage_error(message: str) -> int:
    """Say what is wrong with the command line in one line; the exit code for it (2)."""
    print(f"cifar-tui: error: {message}", file=sys.stderr)
    return EXIT_USAGE
