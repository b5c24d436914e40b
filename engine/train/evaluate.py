"""Evaluation on the test split: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.data.pipeline import TensorBatches


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


def tta_logits(model: nn.Module, x: torch.Tensor, *, flip: bool, translate: bool) -> torch.Tensor:
    """The model's logits, averaged over test-time views: the mirror image (``flip``), and
    copies shifted one pixel up-left and down-right with mirrored borders (``translate``,
    weight 1/4 each, the unshifted view 1/2)."""

    def views(v: torch.Tensor) -> torch.Tensor:
        out = model(v).float()
        return (out + model(v.flip(3)).float()) / 2 if flip else out

    logits = views(x)
    if translate:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        up_left = padded[..., :h, :w].contiguous(memory_format=layout)
        down_right = padded[..., 2:, 2:].contiguous(memory_format=layout)
        logits = 0.5 * logits + 0.25 * views(up_left) + 0.25 * views(down_right)
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    source: TensorBatches,
    num_classes: int,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    tta: bool = False,
    tta_translate: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] = lambda _done: None,
    reduce: Callable[..., None] | None = None,
    predictions: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> EvalResult:
    """Evaluate in eval mode (BatchNorm running stats), restoring the previous mode after.
    ``should_stop`` is asked between batches; EvaluationInterrupted if it says so. A batch may
    hold more images than labels (padded to one shape for torch.compile): the extra are ignored.
    ``reduce`` sums the loss and the confusion counts over data-parallel ranks, each of which
    evaluated its share of every batch. ``predictions(index, labels, logits)`` is given each
    batch (index: the images' places in the test split), for the mistakes gallery."""
    was_training = model.training
    model.eval()
    # float32 sums (float64 is not on every backend, e.g. Apple MPS); a test set's loss sum is small.
    loss_sum = torch.zeros((), device=source.device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=source.device)
    count = 0
    try:
        for step, (x, y) in enumerate(source.batches(0)):
            if should_stop():
                raise EvaluationInterrupted
            with autocast():
                logits = tta_logits(model, x, flip=tta, translate=tta_translate)[: y.shape[0]]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
            count += int(y.shape[0])
            if predictions is not None:
                predictions(source.eval_index(step), y, logits)
            on_batch(count)
    finally:
        model.train(was_training)
    if reduce is not None:  # sharded over ranks: sum the counts (exact) and the losses
        reduce(loss_sum, confusion)
        count = int(confusion.sum())
    matrix = confusion.view(num_classes, num_classes).cpu()
    accuracy, per_class = confusion_stats(matrix)
    return EvalResult(float(loss_sum) / max(count, 1), accuracy, per_class, matrix.tolist())
