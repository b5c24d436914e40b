"""What a learning-rate range test suggests, from its (learning rate, loss) pairs. Torch-free:
the finder that records the pairs (issue 21) and the plot that marks the suggestion both use it.

The test raises the LR exponentially, step by step, and records each batch's loss. Here the
losses are smoothed with a bias-corrected moving average (beta 0.98, fastai's), the record is
cut where the smoothed loss first passes 4x its best (the run diverged), and three rules read
the curve:

- ``valley`` (fastai's default): the longest stretch over which the loss keeps falling; the LR
  a little past its first third. It avoids both the noisy start and the cliff at the end.
- ``steepest``: where the smoothed loss falls fastest against log(LR).
- ``minimum / 10``: a tenth of the LR at the lowest smoothed loss (the classic rule of thumb).

A non-finite loss ends the useful record, as divergence does, so a NaN can never be chosen;
the first tenth of the record is not read (the average has seen too few batches there).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

BETA = 0.98
DIVERGED = 4.0


@dataclass(frozen=True)
class Suggestion:
    valley: float
    steepest: float
    minimum_tenth: float
    lrs: tuple[float, ...]
    """The learning rates of the points the rules read (after the cut)."""
    smoothed: tuple[float, ...]
    """The smoothed losses at those points."""


class RunningSmooth:
    """The bias-corrected exponential moving average of a record as it grows, and whether the
    record has diverged: the finder asks after each step, the rules over the whole record."""

    def __init__(self, beta: float = BETA) -> None:
        self.beta, self.avg, self.n, self.best = beta, 0.0, 0, math.inf

    def add(self, loss: float) -> float:
        """The smoothed value with ``loss`` in (a finite loss)."""
        self.n += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        value = self.avg / (1 - self.beta**self.n)
        self.best = min(self.best, value)
        return value

    def diverged(self, value: float) -> bool:
        """Whether the smoothed ``value`` just added is past 4x the best so far."""
        return self.n > 1 and value > DIVERGED * self.best


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """Bias-corrected exponential moving average; stops at the first non-finite loss."""
    running = RunningSmooth(beta)
    return [running.add(loss) for loss in itertools.takewhile(math.isfinite, losses)]


def usable(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float]]:
    """The (LR, smoothed loss) points before the loss diverged (passed 4x its best) or stopped
    being a number."""
    running, sm = RunningSmooth(), []
    for loss in itertools.takewhile(math.isfinite, losses):
        value = running.add(loss)
        if running.diverged(value):
            break
        sm.append(value)
    return lrs[: len(sm)], sm


def suggest(lrs: list[float], losses: list[float]) -> Suggestion | None:
    """The three rules' learning rates; None when fewer than 5 usable points remain (the test
    diverged at once, or its losses were not numbers): no suggestion beats an absurd one."""
    if len(lrs) != len(losses) or any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
        raise ValueError("a range test needs one positive, finite learning rate per loss")
    xs, ys = usable(lrs, losses)
    # The first tenth of the record is left out: the moving average has seen few batches there,
    # and a noisy first slope is how other finders end up suggesting the smallest LR tried.
    skip = max(2, len(losses) // 10)
    xs, ys = xs[skip:], ys[skip:]
    if len(xs) < 5:
        return None
    return Suggestion(_valley(xs, ys), _steepest(xs, ys), xs[min(range(len(ys)), key=ys.__getitem__)] / 10,
                      tuple(xs), tuple(ys))  # fmt: skip


def _valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley: the longest run of ever lower losses (a longest decreasing subsequence),
    then the point 1/3 + 1/6 of the way into it."""
    n = len(losses)
    run = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end = i
            start = end - run[end]
    third = (end - start) / 3
    return lrs[start + int(third) + int(third / 2)]


def _steepest(lrs: list[float], losses: list[float]) -> float:
    """The LR where the loss falls fastest per unit of log(LR) (central differences)."""
    logs = [math.log(lr) for lr in lrs]
    slopes = [(losses[i + 1] - losses[i - 1]) / max(logs[i + 1] - logs[i - 1], 1e-12) for i in range(1, len(lrs) - 1)]
    return lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]
