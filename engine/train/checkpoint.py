"""Checkpoints, the one owner of their format: what one holds (:func:`build_checkpoint`), how a
run comes back from one (:func:`restore_checkpoint`), writing them atomically (the store, and the
final save that waits for disk room), loading them with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values only, so loading it can never
run code from the file.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import Controls
from engine.run.errors import CheckpointError, first_line
from engine.run.events import Phase
from engine.run.fileio import atomic_torch_save, clear_torn_writes, free_bytes
from engine.run.rundir import BEST, LAST
from engine.run.steering import SteerState
from engine.run.wording import duration, plural
from engine.train.ema import WeightEma
from engine.train.state import TrainState

FORMAT = "cifar-tui/1"
REQUIRED = ("format", "model", "optimizer", "scheduler", "epoch", "step", "global_step", "config", "class_names")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; CheckpointError with a one-line reason otherwise."""
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global it does not allow: that is what a code-running pickle needs.
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"refused to load {path}: it holds Python objects, not just tensors and plain values "
                "(loaded with weights_only=True, so nothing in it ran)"
            ) from exc
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or truncated") from exc
    except Exception as exc:  # random bytes surface as IndexError, EOFError, BadZipFile, RuntimeError...
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or truncated") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cifar-tui checkpoint (use --weights PATH for a plain state dict)")
    missing = [k for k in REQUIRED if k not in blob]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if problem := schema_problem(blob):
        raise CheckpointError(f"{path} is not a cifar-tui checkpoint: {problem}")
    return blob


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def schema_problem(blob: dict[str, Any]) -> str:
    """What is wrong with a loaded checkpoint's fields ("" if nothing): each field of the type
    cifar-tui writes, counts in range, and weights that are all finite numbers."""
    model = blob["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):  # fmt: skip
        return f"model is a {type(model).__name__}, not a state dict of tensors"
    for field in ("optimizer", "scheduler", "config"):
        if not isinstance(blob[field], dict):
            return f"{field} is a {type(blob[field]).__name__}, not a dict"
    for field in ("epoch", "step", "global_step"):
        if not _count(blob[field]):
            return f"{field} is {blob[field]!r}, not a count"
    if blob["epoch"] > 100_000 or blob["step"] > blob["global_step"]:
        return f"epoch {blob['epoch']}, step {blob['step']}, global_step {blob['global_step']} are out of range"
    names = blob["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return f"class_names is {type(names).__name__} {str(names)[:40]}, not a list of class names"
    for name, tensor in model.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"model weight {name} is not finite (NaN or inf): the run diverged before this was saved"
    return ""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass  # resumed on another GPU count; data order comes from (seed, epoch) anyway


class CheckpointStore:
    """``checkpoints/step-NNNNNNNN.pt`` files, the newest ``keep`` of them kept, plus ``last.pt`` and
    ``best.pt`` as hard links (atomically replaced), so "last" and "best" cost no extra write."""

    STEP_RE = re.compile(r"^step-(\d+)\.pt$")

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = folder
        self.keep = max(1, keep)
        clear_torn_writes(folder)  # leftovers of a write that was killed: never a valid checkpoint

    def save(self, state: dict[str, Any], *, best: bool) -> Path:
        path = self.folder / f"step-{int(state['global_step']):08d}.pt"
        while True:
            try:
                save_checkpoint(path, state)
                break
            except OSError as exc:
                # A full disk: the oldest kept checkpoints go after this save anyway; let them go
                # first (never the one last.pt or best.pt is), then try again.
                if exc.errno != errno.ENOSPC or not self._drop_oldest(path):
                    raise
        self._point(self.folder / LAST, path)
        if best:
            self._point(self.folder / BEST, path)
        self._prune()
        return path

    def _point(self, name: Path, target: Path) -> None:
        tmp = name.with_name(f".{name.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(target, tmp)
        except OSError:  # no hard links here (some network/FAT file systems): copy
            shutil.copyfile(target, tmp)
        os.replace(tmp, name)

    def _drop_oldest(self, writing: Path) -> bool:
        """Delete the oldest step checkpoint that neither last.pt nor best.pt is; False if none."""
        named = set()
        for name in (LAST, BEST):
            try:
                named.add(os.stat(self.folder / name).st_ino)
            except FileNotFoundError:
                pass
        steps = sorted(p for p in self.folder.iterdir() if self.STEP_RE.match(p.name) and p != writing)
        for old in steps:
            try:
                if os.stat(old).st_ino not in named:
                    old.unlink()
                    return True
            except FileNotFoundError:
                continue
        return False

    def _prune(self) -> None:
        steps = sorted(p for p in self.folder.iterdir() if self.STEP_RE.match(p.name))
        for old in steps[: -self.keep]:
            old.unlink(missing_ok=True)


def build_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, ema: WeightEma | None,
                     state: TrainState, cfg: TrainConfig, class_names: Sequence[str],
                     epoch_stats: dict[str, float | int]) -> dict[str, Any]:  # fmt: skip
    """Everything a run needs to go on exactly where it is: the weights, the optimizer and
    schedule, where it is, its RNG streams, its config and classes, the epoch so far (every
    rank's share) and the weight average."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "global_step": state.global_step,
        "rng": rng_state(),
        "config": cfg.to_dict(),
        "class_names": list(class_names),
        "best_accuracy": state.best_accuracy,
        "epoch_stats": dict(epoch_stats),
        "ema": ema.state_dict() if ema is not None else None,
        "steering": state.steer.to_dict(),
    }


def restore_checkpoint(ckpt: dict[str, Any], source: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, ema: WeightEma | None, state: TrainState,
                       steps_per_epoch: int) -> dict[str, Any]:  # fmt: skip
    """Put a run back as ``ckpt`` (read from ``source``) left it: the parts, where it is, its
    RNG streams. Returns the saved partial epoch's statistics; CheckpointError if it does not fit."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {source} does not fit this model: {first_line(exc, 160)}") from exc
    state.epoch, state.step, state.global_step = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["global_step"])
    if state.step > steps_per_epoch:  # (== steps: stopped after the last batch, before the epoch ended)
        raise CheckpointError(f"checkpoint {source} is at step {state.step} of an epoch that has "
                              f"{steps_per_epoch} steps with this data and batch size")  # fmt: skip
    state.best_accuracy = ckpt.get("best_accuracy")
    state.steer = SteerState.from_dict(ckpt.get("steering"), int(ckpt["config"].get("epochs", 0)))
    # The run's last good checkpoint, until this process writes one (a failure or a lost final
    # save names it; a restarted launch said "none").
    state.last_checkpoint, state.saved_step = source, state.global_step
    if ema is not None and ckpt.get("ema"):
        ema.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt.get("rng") or {})
    return dict(ckpt.get("epoch_stats") or {})


def save_final(store: CheckpointStore, blob: dict[str, Any], best: bool, wait: float, controls: Controls,
               emit: Callable[[ev.Event], None], status: Callable[[str, str], None], lost_steps: int) -> Path:  # fmt: skip
    """The run's last save: on failure, say so and retry every 10 s until it fits, ``wait``
    seconds run out or a further stop request gives up (a second Ctrl-C, ``q`` again); the
    last failure is raised then."""
    try:
        return store.save(blob, best=best)
    except OSError as exc:
        failure = exc
    if wait <= 0:
        raise failure
    folder, stops = store.folder, controls.stops
    emit(ev.Log(
        f"final checkpoint NOT saved ({failure.strerror or failure}): make room in {folder}; retrying every "
        f"10 s for up to {duration(wait)} (stop again to give up: the {plural(lost_steps, 'step')} since the last "
        f"good checkpoint would be lost)", level="error"))  # fmt: skip
    deadline = time.monotonic() + wait
    free_then, tried, said = free_bytes(folder), time.monotonic(), -math.inf
    controls.waiting_for_room = True
    try:
        while (left := deadline - time.monotonic()) > 0:
            if time.monotonic() - said >= 10.0:  # the dashboard sees the trainer at work, the user the time left
                said = time.monotonic()
                status(Phase.WAITING_FOR_ROOM, f"to save the final checkpoint in {folder}, {duration(left)} left")
            if controls.wait_for_stop(stops, min(1.0, left)):
                break
            # Try again every 10 s, or at once when room was made (a file deleted).
            free = free_bytes(folder)
            if free <= free_then + 2**20 and time.monotonic() - tried < 10.0:
                continue
            free_then, tried = free, time.monotonic()
            try:
                path = store.save(blob, best=best)
            except OSError as exc:
                failure = exc
            else:
                emit(ev.Log(f"final checkpoint saved after all: {path}"))
                return path
    finally:
        controls.waiting_for_room = False
    raise failure
