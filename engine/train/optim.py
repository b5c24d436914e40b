"""Optimizers from a config (the learning-rate schedule is engine/train/schedule.py)."""

from __future__ import annotations

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
