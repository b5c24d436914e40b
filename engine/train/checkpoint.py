"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain values only, so loading it can never
run code from the file.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from engine.run.errors import CheckpointError
from engine.run.fileio import atomic_torch_save

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
        if folder.is_dir():  # leftovers of a write that was killed: never a valid checkpoint
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

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
        self._point(self.folder / "last.pt", path)
        if best:
            self._point(self.folder / "best.pt", path)
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
        for name in ("last.pt", "best.pt"):
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
