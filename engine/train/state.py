"""Where a run is, shared by the trainer (which sets it up or resumes it), the loop (which
moves it on) and the checkpoint (which saves and restores it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.run.steering import SteerState
from engine.train.evaluate import EvalResult


@dataclass
class TrainState:
    """Where a run is: set up (or resumed) by the trainer, moved on by the loop, reported by both."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    start_global_step: int = 0  # where this process started (a resume starts later)
    best_accuracy: float | None = None
    last_eval: EvalResult | None = None
    last_checkpoint: str = ""
    unsaved: str = ""  # why the final save failed: the run's end is in no checkpoint
    saved_step: int = 0  # the global step of the last checkpoint written (or resumed from)
    steer: SteerState = field(default_factory=SteerState)  # the steered plan (checkpointed with the rest)
