"""The learning-rate schedule of a run, and its re-plans: one owner of "what multiplier does
step N get". A steered run changes its length while it trains: the rest of the schedule is
re-planned from the current step (warm-up that is done stays done; the decay stretches or
shrinks over the new remainder, continuing from where it is), and a live LR multiplier scales
whatever the schedule says (never an override that the schedule would silently undo)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.run.config import TrainConfig

#: The triangular schedule starts at this share of the peak learning rate (as airbench's).
TRIANGULAR_START = 0.2


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up length in steps: at most half the run, so a warm-up longer than a short run
    still leaves it a decay instead of ending at (or diverging from) the peak."""
    total = max(1, cfg.epochs * steps_per_epoch)
    return min(total // 2, int(cfg.warmup_epochs * steps_per_epoch))


class LrSchedule:
    """Per-step LR factor (times the base LR) of ``cfg.schedule``, planned for ``first_epochs``
    and then re-planned at each ``(step, epochs)`` of ``replans``; ``scale`` multiplies it."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, first_epochs: int | None = None,
                 replans: Sequence[Sequence[int]] = (), scale: float = 1.0) -> None:  # fmt: skip
        self.kind = cfg.schedule
        self.steps_per_epoch = max(1, steps_per_epoch)
        first = first_epochs or cfg.epochs
        self.warm = warmup_steps(cfg.with_overrides(epochs=first), steps_per_epoch)
        # Segments of the decay: (from step, progress there, total steps of that plan).
        self.segments: list[tuple[int, float, int]] = [(0, 0.0, max(1, first * steps_per_epoch))]
        self.scale = scale
        for at, epochs in replans:
            self.replan(at, epochs)

    @property
    def epochs(self) -> int:
        """The length the schedule is planned for now."""
        return self.segments[-1][2] // self.steps_per_epoch

    def replan(self, at_step: int, epochs: int) -> None:
        """From ``at_step`` on, end the decay at ``epochs`` instead: it goes on from the progress
        it has reached and covers the new remainder. A warm-up still under way is kept, cut to
        at most half the new length (never below the steps already warmed)."""
        total = max(1, epochs * self.steps_per_epoch)
        self.warm = min(self.warm, max(at_step, total // 2))
        begin = max(at_step, self.warm)
        self.segments.append((at_step, self.progress(begin), total))

    def progress(self, step: int) -> float:
        """How far the decay has gone at ``step``: 0 through the warm-up, 1 at the plan's end."""
        start, done, total = next(seg for seg in reversed(self.segments) if seg[0] <= step)
        begin = max(start, self.warm)
        if step <= begin:
            return done
        return min(1.0, done + (1.0 - done) * (step - begin) / max(1, total - begin))

    def factor(self, step: int) -> float:
        """The schedule's own factor at ``step`` (without the multiplier)."""
        if self.kind == "constant":
            return 1.0
        if step < self.warm:
            if self.kind == "triangular":
                return TRIANGULAR_START + (1.0 - TRIANGULAR_START) * step / self.warm
            return (step + 1) / self.warm
        p = self.progress(step)
        if self.kind in ("linear", "triangular"):
            return max(0.0, 1.0 - p)
        return 0.5 * (1.0 + math.cos(math.pi * p))  # cosine and onecycle

    def __call__(self, step: int) -> float:
        return self.factor(step) * self.scale
