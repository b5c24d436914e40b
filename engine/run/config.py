"""Typed training configuration, named recipes and validation.

This module must stay importable without torch: the dashboard process builds and
validates a config before it starts the training process.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.run.choices import (
    CIFAR_STEM_ARCHS,
    DATA_BUILTINS,
    FLIPS,
    LOADERS,
    LR_FIND_MODES,
    OPTIMIZERS,
    PAD_MODES,
    SCHEDULES,
    SUPPORTED_ARCHS,
)
from engine.run.errors import ConfigError
from engine.run.label import check_name, check_notes, check_tags
from engine.run.recipes import RECIPES
from engine.run.steering import parse_early_stop_rule

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def default_cache_dir() -> Path:
    """Folder for downloaded data sets and decoded-image caches (XDG convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cifar-tui"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the tutorial's recipe."""

    recipe: str = "tutorial"
    """Name of the preset the other values started from."""
    data: str = "cifar10"
    """``cifar10``, ``demo`` or a path to an ImageFolder tree with train/ and test/ (or val/)."""
    data_dir: str = ""
    """Where torchvision caches CIFAR-10; empty means the user cache folder."""
    image_size: int = 32
    """Images from a folder are resized to this square size."""
    train_limit: int = 0
    """Use at most this many training images (seeded random subset); 0 means all."""
    test_limit: int = 0
    """Use at most this many test images (seeded random subset); 0 means all."""
    arch: str = "resnet18"
    """torchvision model name."""
    weights: str = "imagenet"
    """``imagenet`` (download through torchvision), ``none`` or a path to a state dict file."""
    stem: str = "imagenet"
    """``imagenet`` keeps the 7x7/2 stem and max-pool; ``cifar`` uses a 3x3/1 stem, no max-pool."""
    zero_init_residual: bool = False
    """Start each residual branch's last BatchNorm scale at zero, so every block starts as its
    shortcut (torchvision's ``zero_init_residual``; ResNets trained from scratch)."""
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.001
    """Peak learning rate."""
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    """Decoupled for AdamW; L2 for SGD. Applied to norm layers and biases only with ``decay_norms``."""
    decay_norms: bool = False
    """Apply weight decay to norm weights and biases too (the published fast recipes do)."""
    optimizer: str = "sgd"
    schedule: str = "constant"
    """Per-step schedule: constant, cosine, onecycle (warm-up then cosine), linear (warm-up from 0 then
    linearly to 0) or triangular (from 0.2 x lr up to lr over the warm-up, then linearly to 0)."""
    warmup_epochs: float = 0.0
    """Warm-up length for the cosine/onecycle/linear/triangular schedules (at most half the run)."""
    label_smoothing: float = 0.0
    amp: bool = False
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = False
    sync_bn: bool = False
    """Data-parallel on GPUs: BatchNorm statistics over the whole global batch (SyncBatchNorm)
    instead of each rank's share."""
    compile: bool = False
    """Wrap the model in torch.compile (CUDA only; compile time is reported apart)."""
    tta: bool = False
    """Average predictions over horizontally flipped test images."""
    tta_translate: bool = False
    """Also average over test images shifted one pixel up-left and down-right (weights 1/4 each)."""
    pad_mode: str = "zeros"
    """Padding for the random 4-pixel translation: ``zeros`` (the tutorial's) or ``reflect``."""
    flip: str = "random"
    """Training flips: ``random``, ``alternate`` (each image flipped every other epoch) or ``off``."""
    cutout: int = 0
    """Side of a square blanked at a random place in each training image; 0 = off."""
    drop_last: bool = False
    """Drop each epoch's ragged last batch: every step has one shape (what torch.compile wants)."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, evaluated instead of them; 0 = off."""
    loader: str = "auto"
    """``tensor`` (whole data set as a tensor on the device, batch augmentation),
    ``dataloader`` (torch DataLoader + PIL transforms, as the tutorial) or ``auto``."""
    workers: int = 2
    """DataLoader worker processes (dataloader path only)."""
    eval_batch_size: int = 500
    eval_every: int = 0
    """Also evaluate on the test split every this many steps (long epochs); 0: at epoch ends only."""
    early_stop: str = ""
    """``patience=N[,min-delta=D]``: end the run (completed) once test accuracy has not gained more
    than D points for N epochs; empty: off. Changeable while training (engine/run/steering.py)."""
    target_accuracy: float = 0.0
    """End the run (completed) once test accuracy reaches this fraction; 0: off."""
    lr_find: str = ""
    """Run a learning-rate range test first: ``show`` (report it, train at --lr), ``ask`` (pause
    for the dashboard to choose), ``use`` (train at the suggestion, as a multiplier on --lr),
    ``only`` (the test and nothing else); empty: off."""
    lr_find_start: float = 1e-7
    """The range test's first learning rate; it rises exponentially to ``lr_find_end``."""
    lr_find_end: float = 10.0
    lr_find_steps: int = 100
    """The most steps the range test takes (it stops earlier once the loss diverges)."""
    seed: int = 0
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    log_every: int = 200
    """Report the running training loss every this many batches (the tutorial printed every 200)."""
    progress_hz: float = 10.0
    """At most this many progress events per second."""
    run_dir: str = ""
    """Run directory; empty means a new folder under ``runs_root``."""
    runs_root: str = "runs"
    name: str = ""
    """What to call the run in lists (empty: its folder's name); kept in label.json, editable later."""
    tags: str = ""
    """Tags, separated by commas or spaces (label.json)."""
    notes: str = ""
    """Free text about the run (label.json)."""
    resume: str = ""
    """Checkpoint to continue from."""
    overwrite: bool = False
    """Allow reusing a run directory that already holds a run."""
    keep: int = 1
    """Keep the newest this many step checkpoints (plus last.pt and best.pt)."""
    save_wait: float = 1800.0
    """At a run's end, seconds to wait for room to save the final checkpoint (its weights are nowhere else)."""
    rank_timeout: float = 300.0
    """Data-parallel: a rank that stops answering this many seconds fails the run (not hangs it)."""
    explicit: tuple[str, ...] = ()
    """Names of the options the user gave explicitly (they win over a resumed checkpoint's)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples become lists)."""
        values = asdict(self)
        values["explicit"] = list(self.explicit)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        kept["explicit"] = tuple(kept.get("explicit", ()))
        return cls(**kept)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **overrides)


def from_recipe(recipe: str, **overrides: Any) -> TrainConfig:
    """The recipe's config with explicit values on top, validated."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r} (choose from: {', '.join(RECIPES)})")
    given = {k: v for k, v in overrides.items() if v is not None}
    preset = RECIPES[recipe]
    values = {**preset, **given}
    if "epochs" in given and "warmup_epochs" in preset and "warmup_epochs" not in given:
        # A shorter (or longer) run keeps the recipe's warm-up as the same share of the run.
        values["warmup_epochs"] = round(preset["warmup_epochs"] * given["epochs"] / preset["epochs"], 4)
    if values.get("data", TrainConfig.data) == "demo" and "weights" not in given:
        values["weights"] = "none"  # the offline demo never reaches for the network unless asked to
    cfg = TrainConfig(recipe=recipe, explicit=tuple(sorted(given)), **values)
    validate(cfg)
    return cfg


def seeds_augmentation(cfg: TrainConfig) -> bool:
    """The tutorial's training augmentation: zero-padded random crop and random flip, nothing else."""
    return cfg.pad_mode == "zeros" and cfg.flip == "random" and cfg.cutout == 0


MAX_SEED = 2**32 - 1  # each epoch's generator is seeded with seed * 1_000_003 + epoch: it must fit in 64 bits


def _check_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if value < lo or (lo_open and value == lo) or value > hi:
        low = f"> {lo}" if lo_open else f">= {lo}"
        raise ConfigError(f"--{name.replace('_', '-')} must be {low} and <= {hi}, got {value}")


def path_kind(option: str, value: str) -> str:
    """'file', 'dir', 'other' or 'missing'; ConfigError when the system cannot even look
    (a name too long, a loop of links, no permission to search a folder on the way)."""
    try:
        st = os.stat(value)
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{option}: cannot use {value[:80]!r}: {why}") from exc
    return "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError with a one-line message for the first invalid value."""
    for option, check, value in (("--name", check_name, cfg.name), ("--tags", check_tags, cfg.tags),
                                 ("--notes", check_notes, cfg.notes)):  # fmt: skip
        try:
            check(value)  # type: ignore[operator]
        except ValueError as exc:
            raise ConfigError(f"{option}: {exc}") from None
    _check_range("epochs", cfg.epochs, 1, 100_000)
    _check_range("batch_size", cfg.batch_size, 1, 65_536)
    if cfg.batch_size < 2:
        raise ConfigError("--batch-size must be at least 2: BatchNorm cannot train on one image per batch")
    _check_range("eval_batch_size", cfg.eval_batch_size, 1, 65_536)
    _check_range("eval_every", cfg.eval_every, 0, 10**9)
    _check_range("target_accuracy", cfg.target_accuracy, 0.0, 1.0)
    if cfg.lr_find not in LR_FIND_MODES:
        raise ConfigError(f"--lr-find {cfg.lr_find!r}: use show, use or only (or no value)")
    try:
        parse_early_stop_rule(cfg.early_stop)
    except ValueError as exc:
        raise ConfigError(f"--early-stop: {exc}") from None
    _check_range("lr", cfg.lr, 0.0, 100.0, lo_open=True)
    _check_range("lr_find_start", cfg.lr_find_start, 0.0, 100.0, lo_open=True)
    _check_range("lr_find_end", cfg.lr_find_end, 0.0, 1000.0, lo_open=True)
    if not cfg.lr_find_end > cfg.lr_find_start:
        raise ConfigError(f"--lr-find-end ({cfg.lr_find_end:g}) must be above --lr-find-start ({cfg.lr_find_start:g})")
    _check_range("lr_find_steps", cfg.lr_find_steps, 2, 100_000)
    _check_range("momentum", cfg.momentum, 0.0, 0.999)
    _check_range("weight_decay", cfg.weight_decay, 0.0, 1.0)
    _check_range("warmup_epochs", cfg.warmup_epochs, 0.0, 10_000.0)  # longer than the run: warm-up all the way
    _check_range("label_smoothing", cfg.label_smoothing, 0.0, 0.99)
    _check_range("ema", cfg.ema, 0.0, 0.99999)
    _check_range("image_size", cfg.image_size, 8, 1024)
    _check_range("workers", cfg.workers, 0, 64)
    _check_range("seed", cfg.seed, 0, MAX_SEED)
    _check_range("log_every", cfg.log_every, 1, 10**9)
    _check_range("keep", cfg.keep, 1, 10_000)
    _check_range("save_wait", cfg.save_wait, 0.0, 7 * 86_400.0)
    _check_range("rank_timeout", cfg.rank_timeout, 1.0, 86_400.0)
    _check_range("progress_hz", cfg.progress_hz, 0.0, 1000.0, lo_open=True)
    _check_range("train_limit", cfg.train_limit, 0, 10**9)
    if cfg.train_limit == 1:
        raise ConfigError("--train-limit must be 0 (all) or at least 2: one image makes no training batch")
    _check_range("test_limit", cfg.test_limit, 0, 10**9)
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {cfg.optimizer!r} (choose from: {', '.join(OPTIMIZERS)})")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r} (choose from: {', '.join(SCHEDULES)})")
    _check_range("cutout", cfg.cutout, 0, 1024)
    if cfg.pad_mode not in PAD_MODES:
        raise ConfigError(f"unknown --pad-mode {cfg.pad_mode!r} (choose from: {', '.join(PAD_MODES)})")
    if cfg.flip not in FLIPS:
        raise ConfigError(f"unknown --flip {cfg.flip!r} (choose from: {', '.join(FLIPS)})")
    if cfg.loader == "dataloader" and not seeds_augmentation(cfg):
        raise ConfigError("--cutout, --pad-mode reflect and --flip alternate/off need --loader tensor "
                          "(the dataloader path is the tutorial's augmentation)")  # fmt: skip
    if cfg.loader not in LOADERS:
        raise ConfigError(f"unknown loader {cfg.loader!r} (choose from: {', '.join(LOADERS)})")
    if cfg.arch not in SUPPORTED_ARCHS:
        raise ConfigError(f"unknown or unsupported arch {cfg.arch!r} (choose from: {', '.join(SUPPORTED_ARCHS)})")
    if cfg.stem not in ("imagenet", "cifar"):
        raise ConfigError(f"--stem must be 'imagenet' or 'cifar', got {cfg.stem!r}")
    if cfg.stem == "cifar" and cfg.arch not in CIFAR_STEM_ARCHS:
        raise ConfigError(f"--stem cifar works with ResNet-family archs only, not {cfg.arch!r}")
    if cfg.zero_init_residual and cfg.arch not in CIFAR_STEM_ARCHS:
        raise ConfigError(f"--zero-init-residual works with ResNet-family archs only, not {cfg.arch!r}")
    if cfg.zero_init_residual and cfg.weights != "none" and "zero_init_residual" in cfg.explicit and not cfg.resume:
        # Asked for by name with pretrained weights: they would replace it (a recipe's value just yields).
        raise ConfigError("--zero-init-residual on initialises a model trained from scratch: it needs --weights none")
    if not _DEVICE_RE.match(cfg.device):
        raise ConfigError(f"unknown device {cfg.device!r} (use auto, cpu, cuda, cuda:N or mps)")
    if cfg.weights not in ("imagenet", "none"):
        kind = path_kind("--weights", cfg.weights)
        if kind != "file":
            raise ConfigError(f"--weights: no such file: {cfg.weights} (use imagenet, none or a state dict file)")
    if cfg.data not in DATA_BUILTINS:
        kind = path_kind("--data", cfg.data)
        if kind == "missing":
            raise ConfigError(f"--data: {cfg.data!r} is neither {' nor '.join(DATA_BUILTINS)} nor an existing folder")
        if kind != "dir":
            raise ConfigError(
                f"--data: {cfg.data} is not a folder (expected an ImageFolder tree with train/ and test/)"
            )
    if cfg.resume and path_kind("--resume", cfg.resume) != "file":
        raise ConfigError(f"--resume: no such checkpoint file: {cfg.resume}")
    for option, value in (("--run-dir", cfg.run_dir), ("--runs-root", cfg.runs_root), ("--data-dir", cfg.data_dir)):
        if value:
            path_kind(option, value)  # a name the system refuses (too long, a NUL) fails here, not later
