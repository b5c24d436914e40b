"""What the step loop works with: its host (the trainer), its parts, the running statistics
of an epoch, and the two device checks it makes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from engine.data.pipeline import BatchSource, TensorBatches
from engine.data.sources import DataBundle
from engine.ranks.group import World
from engine.run import events as ev
from engine.run.controls import Controls
from engine.train.ema import WeightEma
from engine.train.state import TrainState
from engine.train.steering import Steering


class LoopHost(Protocol):
    """What the loop needs of the run around it (the trainer)."""

    state: TrainState
    controls: Controls
    world: World
    status_every_s: float
    run_dir: Path

    def emit(self, event: ev.Event) -> None: ...

    def status(self, state: str, message: str = "") -> None: ...


@dataclass
class LoopParts:
    """What the loop trains and evaluates, built by the trainer."""

    model: nn.Module  # the plain model: saved, checked, the EMA's source
    step_model: nn.Module  # what a training step calls: the model, or it wrapped in DDP and/or compiled
    eval_model: nn.Module  # what an evaluation calls
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_src: BatchSource
    test_src: TensorBatches
    data: DataBundle
    device: torch.device
    steering: Steering
    ema: WeightEma | None = None


class StopTraining(Exception):
    """Raised inside the loop when a stop request is honoured."""


@dataclass
class EpochStats:
    """Running sums of the epoch. Between reports they grow on the device (float32 and int64,
    which every backend has; the loop never waits for them); ``fold`` moves them into the host's
    float64 totals at a report, where the loop reads the device anyway."""

    partial_loss: torch.Tensor
    partial_correct: torch.Tensor
    loss_total: float = 0.0
    correct_total: int = 0
    seen: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochStats:
        return cls(torch.zeros((), device=device), torch.zeros((), dtype=torch.int64, device=device))

    def add(self, loss: torch.Tensor, correct: torch.Tensor, batch: int) -> None:
        self.partial_loss += loss.float() * batch
        self.partial_correct += correct
        self.seen += batch

    def fold(self, partial: tuple[float, int] | None = None) -> None:
        """Move the device sums into the totals (``partial`` when the caller already read them)."""
        loss, correct = partial if partial is not None else (float(self.partial_loss), int(self.partial_correct))
        self.loss_total += loss
        self.correct_total += correct
        self.partial_loss.zero_()
        self.partial_correct.zero_()


def all_finite(model: nn.Module) -> bool:
    """Parameters and floating buffers (BatchNorm statistics) all finite, read with one sync."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (for timing only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
