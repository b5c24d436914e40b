"""Model construction: a torchvision classifier with its head resized to the data's classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from engine.run.config import TrainConfig
from engine.run.errors import CheckpointError, DownloadError, first_line
from engine.run.events import Phase


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer (fc, classifier[-1], heads.head...) for a ``num_classes``-way one."""
    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        raise ValueError(f"{type(model).__name__} has no Linear head to replace")
    parent_name, _, attr = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))


def _use_cifar_stem(model: nn.Module) -> None:
    """3x3 stride-1 stem without max-pool: keeps 32x32 detail that the 7x7/2 + pool stem throws away."""
    width = int(model.conv1.out_channels)  # type: ignore[union-attr,arg-type]
    model.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()


def _zero_init_residual(model: nn.Module) -> None:
    """Zero the scale of each residual branch's last BatchNorm: every block then starts as its
    shortcut, and the signal through the network at step 0 is the stem's alone. Without it, a
    CIFAR-stem ResNet-18 whose learning rate reaches ~0.09 within tens of steps diverges
    (docs/benchmarks.md, "A recipe's first steps")."""
    for block in model.modules():
        last_bn = getattr(block, "bn3", None) if isinstance(block, Bottleneck) else getattr(block, "bn2", None)
        if isinstance(block, (BasicBlock, Bottleneck)) and isinstance(last_bn, nn.BatchNorm2d):
            nn.init.zeros_(last_bn.weight)


def _imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    weights_enum = torchvision.models.get_model_weights(arch)
    weights = getattr(weights_enum, "IMAGENET1K_V1", None) or weights_enum.DEFAULT
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        raise DownloadError(
            f"could not download ImageNet weights for {arch} ({first_line(exc)}); use --weights none "
            f"to train from scratch, or --weights PATH with a state dict file",
            resource="weights",
        ) from exc


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, loaded safely (no code runs)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot load weights file {path}: {first_line(exc)}") from exc
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        blob = blob["model"]  # one of our checkpoints
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError(f"weights file {path} does not hold a state dict of tensors")
    return blob


def build_model(cfg: TrainConfig, num_classes: int, notify: Callable[[str, str], None]) -> nn.Module:
    """The configured model with pretrained weights loaded where asked (head always fresh)."""
    model = torchvision.models.get_model(cfg.arch, weights=None)
    if cfg.weights == "imagenet":
        notify(Phase.DOWNLOADING, f"loading ImageNet weights for {cfg.arch} (downloaded once, then cached)")
        state: dict[str, torch.Tensor] | None = _imagenet_state_dict(cfg.arch)
    elif cfg.weights == "none":
        state = None
    else:
        state = load_state_dict_file(Path(cfg.weights))
    _replace_head(model, num_classes)
    if cfg.stem == "cifar":
        _use_cifar_stem(model)
    if cfg.zero_init_residual and state is None:  # pretrained weights would replace it
        _zero_init_residual(model)
    if state is not None:
        own = model.state_dict()
        # Keep only tensors that fit: the new head (and a CIFAR stem) start fresh.
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if len(usable) < len(own) // 2:
            raise CheckpointError(
                f"weights {cfg.weights} do not fit {cfg.arch}: only {len(usable)} of {len(own)} tensors match"
            )
        skipped = sorted(set(own) - set(usable))
        model.load_state_dict(usable, strict=False)
        if skipped:
            notify(
                "info",
                f"weights: {len(usable)} tensors loaded, fresh: {', '.join(s.rsplit('.', 1)[0] for s in skipped[:4])}",
            )
    return model
