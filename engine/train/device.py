"""The training device: which one (``--device``), what it is called, its GPU's UUID, which
data loader and whether torch.compile suit it."""

from __future__ import annotations

import platform
from pathlib import Path

import torch
from torch import nn

from engine.run import events as ev
from engine.run.config import TrainConfig, seeds_augmentation
from engine.run.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is available on this machine; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def resolve_loader(cfg: TrainConfig, device: torch.device) -> str:
    """``auto``: the tutorial's DataLoader + PIL path for the tutorial recipe on a CPU (its exact
    mechanics); the tensor pipeline everywhere else, the tutorial on a GPU included (the same
    augmentation distribution, see engine/data/pipeline.py, without a GPU waiting on PIL)."""
    if cfg.loader != "auto":
        return cfg.loader
    if cfg.recipe == "tutorial" and device.type == "cpu" and seeds_augmentation(cfg):
        return "dataloader"
    return "tensor"


def gpu_uuids(device: torch.device) -> list[str]:
    """The training GPU's UUID as NVML spells it (no ``GPU-`` prefix, lower case); [] elsewhere."""
    if device.type != "cuda":
        return []
    try:
        return [ev.normal_uuid(str(torch.cuda.get_device_properties(device).uuid))]
    except (AttributeError, RuntimeError):  # an old torch without .uuid, a device that went away
        return []


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return device.type


def can_compile(device: torch.device) -> bool:
    """torch.compile pays off (and is tested by us) on CUDA only."""
    return device.type == "cuda"


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile with static shapes: every training batch has one shape (the compiled
    recipes drop the ragged last batch) and so does every evaluation batch (the last is padded),
    so it compiles once for training and once for evaluation, and never again."""
    return torch.compile(model, dynamic=False)  # type: ignore[return-value]
