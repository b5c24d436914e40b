"""Evaluation on the test split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.pipeline import TensorBatches


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]
    """confusion[true][predicted] counts."""


def confusion_stats(confusion: torch.Tensor) -> tuple[float, list[float]]:
    """Overall accuracy and per-class recall from a (C, C) count matrix."""
    total = int(confusion.sum())
    correct = int(confusion.diag().sum())
    per_class = (confusion.diag().double() / confusion.sum(1).clamp(min=1).double()).tolist()
    return (correct / total if total else 0.0), per_class


class EvaluationInterrupted(Exception):
    """A stop came in the middle of an evaluation (which can take minutes on a CPU)."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    source: TensorBatches,
    num_classes: int,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    tta: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _done: None,
) -> EvalResult:
    """Evaluate in eval mode (BatchNorm running stats), restoring the previous mode after.
    ``should_stop`` is asked between batches; EvaluationInterrupted if it says so."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=source.device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=source.device)
    count = 0
    try:
        for x, y in source.batches(0):
            if should_stop():
                raise EvaluationInterrupted
            with autocast():
                logits = model(x).float()
                if tta:  # average with the mirrored image: free accuracy at 2x eval cost
                    logits = (logits + model(x.flip(3)).float()) / 2
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
            count += int(y.shape[0])
            on_batch(count)
    finally:
        model.train(was_training)
    matrix = confusion.view(num_classes, num_classes).cpu()
    accuracy, per_class = confusion_stats(matrix)
    return EvalResult(float(loss_sum) / max(count, 1), accuracy, per_class, matrix.tolist())
