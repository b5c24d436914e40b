"""Optimizers and learning-rate schedules, from a config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from engine.run.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, decay_norms: bool = False) -> list[dict[str, Any]]:
    """No weight decay on norm weights and biases (1-d tensors) unless ``decay_norms``."""
    if decay_norms:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norms)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


#: The triangular schedule starts at this share of the peak learning rate (as airbench's).
TRIANGULAR_START = 0.2


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up length in steps: at most half the run, so a warm-up longer than a short run
    still leaves it a decay instead of ending at (or diverging from) the peak."""
    total = max(1, cfg.epochs * steps_per_epoch)
    return min(total // 2, int(cfg.warmup_epochs * steps_per_epoch))


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step LR multiplier for the configured schedule (warm-up first where set)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = warmup_steps(cfg, steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warm:
            if cfg.schedule == "triangular":
                return TRIANGULAR_START + (1.0 - TRIANGULAR_START) * step / warm
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.schedule in ("linear", "triangular"):
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine and onecycle

    return factor
