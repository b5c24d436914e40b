"""Engine events: small frozen dataclasses of plain values.

Events are what the engine tells the world. They are picklable and JSON-able (no
tensors), so they cross process boundaries and are written to ``events.jsonl``
as they happen. ``kind`` names each type on the wire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base class; ``t`` is the wall-clock time the event was made."""

    kind: ClassVar[str] = "event"
    t: float = field(default_factory=time.time, kw_only=True)

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """A stored event's fields as this version has them (an older release wrote some otherwise)."""
        return values


class WireName(str, Enum):
    """A name that travels as a plain string (JSON, a pickled dict) and prints as one."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Phase(WireName):
    """The phases of a run, as ``Status.state`` names them on the wire (plain strings there)."""

    STARTING = "starting"
    LOADING_DATA = "loading_data"
    DOWNLOADING = "downloading"
    BUILDING_MODEL = "building_model"
    COMPILING = "compiling"
    FINDING_LR = "finding_lr"
    """The learning-rate range test runs (--lr-find), before training."""
    TRAINING = "training"
    EVALUATING = "evaluating"
    SAVING = "saving"
    WAITING_FOR_ROOM = "waiting_for_room"
    """The run has ended and waits for disk room to save its final checkpoint."""
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Status(Event):
    """The trainer entered a phase (:class:`Phase`)."""

    kind: ClassVar[str] = "status"
    state: str
    message: str = ""


@dataclass(frozen=True)
class Log(Event):
    """A human-readable line (engine notes, warnings, captured stdout/stderr)."""

    kind: ClassVar[str] = "log"
    message: str
    level: str = "info"


def normal_uuid(uuid: str | bytes) -> str:
    """A GPU UUID as torch and NVML can both be compared: no ``GPU-`` prefix, lower case."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    return text.strip().lower().removeprefix("gpu-")


@dataclass(frozen=True)
class RunStarted(Event):
    """Data and model are ready; training is about to start (or continue)."""

    kind: ClassVar[str] = "run_started"
    run_dir: str
    config: dict[str, Any]
    device: str
    device_name: str
    torch_version: str
    cuda_version: str
    num_threads: int
    train_size: int
    test_size: int
    class_names: list[str]
    steps_per_epoch: int
    loader: str
    data_source: str
    start_epoch: int = 0
    start_step: int = 0
    resumed_from: str = ""
    params: int = 0
    gpu_uuids: list[str] = field(default_factory=list)
    """UUIDs of the GPUs this run trains on (``normal_uuid``): the dashboard samples exactly
    these, whatever CUDA_VISIBLE_DEVICES renumbered."""
    world_size: int = 1
    """Data-parallel processes training this run (``--nproc``); sizes and speeds are global."""
    pids: list[int] = field(default_factory=list)
    """The training processes on rank 0's machine (all of them on one machine): the dashboard
    counts their GPU memory as this run's on each card."""
    lr_scale: float = 1.0
    """The steered LR multiplier the run (re)starts with (a resumed run keeps its own)."""


@dataclass(frozen=True)
class Progress(Event):
    """Training progress, emitted at a bounded rate (and on every ``log_every`` boundary).

    ``epoch`` is 0-based; ``step`` counts batches done in this epoch.
    ``interval_loss`` is set only on ``log_every`` boundaries: the mean loss of those batches.
    ``data_wait`` is the share of step time spent waiting for the next batch.
    """

    kind: ClassVar[str] = "progress"
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    global_step: int
    loss: float
    lr: float
    images_per_sec: float
    data_wait: float
    elapsed: float
    interval_loss: float | None = None


@dataclass(frozen=True)
class Evaluation(Event):
    """Result of evaluating on the test split. ``reason``: epoch, request or final."""

    kind: ClassVar[str] = "evaluation"
    epoch: int
    step: int
    global_step: int
    loss: float
    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]
    class_names: list[str]
    seconds: float
    reason: str = "epoch"


@dataclass(frozen=True)
class EpochEnd(Event):
    """An epoch finished (``epoch`` is 1-based here: epochs done)."""

    kind: ClassVar[str] = "epoch_end"
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    images_per_sec: float
    seconds: float
    eval_seconds: float
    lr: float
    compile_seconds: float = 0.0
    """torch.compile time in this epoch (first training step, first evaluation): not in ``seconds``."""


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint_saved"
    path: str
    epoch: int
    step: int
    global_step: int
    reason: str
    size: int = 0
    """Bytes on disk (0: not known, a run written before 2026-12-04)."""


@dataclass(frozen=True)
class Paused(Event):
    kind: ClassVar[str] = "paused"
    global_step: int


@dataclass(frozen=True)
class Resumed(Event):
    kind: ClassVar[str] = "resumed"
    global_step: int


@dataclass(frozen=True)
class LrFound(Event):
    """A learning-rate range test's record and what it suggests (None: no suggestion, the loss
    diverged at once). ``asks``: the run waits, paused, for a dashboard to choose."""

    kind: ClassVar[str] = "lr_found"
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    valley: float | None
    steepest: float | None
    minimum_tenth: float | None
    lr: float
    """The run's own --lr, to compare with."""
    seconds: float
    asks: bool = False
    steps: int = 100
    """The most steps the test was to take (--lr-find-steps)."""
    interrupted: bool = False
    """Stopped before its end: a partial record, no suggestion."""

    @property
    def message(self) -> str:
        took = f"{len(self.lrs)} steps in {self.seconds:.1f} s"
        if self.interrupted:
            return f"lr-find interrupted after {len(self.lrs)} of {self.steps} steps: a partial record, no suggestion"
        if self.valley is None:
            return f"lr-find: no suggestion ({took}): the loss diverged at once or was not a number"
        return (f"lr-find: suggested lr {self.valley:.2e} (valley; steepest {self.steepest:.2e}, "
                f"minimum/10 {self.minimum_tenth:.2e}; --lr is {self.lr:.2e}) from {took}")  # fmt: skip


@dataclass(frozen=True)
class Steered(Event):
    """A steering act at a batch boundary (engine/run/steering.py): what changed from what to
    what, at which step, asked from where; ``refused`` says why it was not applied (``new`` is
    then what was asked). Values are numbers: the LR multiplier, the epochs, the early-stop
    patience (0: off) with its min-delta in ``*_extra``, the target as a fraction (0: off).
    ``request`` is the asker's id for the act, so each asker reads the answer to its own."""

    kind: ClassVar[str] = "steered"
    global_step: int
    epoch: int
    what: str
    old: float
    new: float
    source: str
    refused: str = ""
    old_extra: float = 0.0
    new_extra: float = 0.0
    request: str = ""

    @classmethod
    def upgrade(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Runs written before 2026-12-04 carried display strings ('x0.5', '93%', 'patience=3',
        'off', and '' for a refused act's new value): read as the numbers they show."""
        from engine.run.steering import legacy_value

        what, old = str(values.get("what")), values.get("old")
        for side in ("old", "new"):
            if isinstance(values.get(side), str):
                text = values[side] or str(old)  # a refused act's '' was no change
                values[side], values[f"{side}_extra"] = legacy_value(what, text)
        return values

    @property
    def message(self) -> str:
        from engine.run.steering import NAMES, shown

        name = NAMES.get(self.what, self.what.replace("_", " "))
        old, new = shown(self.what, self.old, self.old_extra), shown(self.what, self.new, self.new_extra)
        if self.refused:
            return f"{name} not changed: {self.refused} (asked from the {self.source}; still {old})"
        return f"{name} {old} -> {new} at step {self.global_step} (from the {self.source})"


@dataclass(frozen=True)
class Finished(Event):
    """The run ended normally. ``reason``: completed or stopped."""

    kind: ClassVar[str] = "finished"
    reason: str
    epochs_done: int
    global_step: int
    test_accuracy: float | None
    best_accuracy: float | None
    seconds: float
    checkpoint: str = ""
    cause: str = ""
    """Why a run stopped early: a signal name, 'app quit', 'app gone', 'stop command'..."""
    unsaved: str = ""
    """Set when the run's end is in no checkpoint because its final save failed: why (disk full...)."""


@dataclass(frozen=True)
class Failed(Event):
    """The run ended with an error. ``kind_`` names it: config, data, download, checkpoint,
    run_dir, out_of_memory, crash."""

    kind: ClassVar[str] = "failed"
    error: str
    message: str
    traceback: str = ""
    detail: str = ""
    """What failed, where the kind has parts: for ``download``, ``data`` or ``weights``."""


@dataclass(frozen=True)
class Detached(Event):
    """The trainer goes on without the dashboard that started it; its output goes to ``log``."""

    kind: ClassVar[str] = "detached"
    pid: int
    log: str

    @property
    def message(self) -> str:
        return f"detached: training continues in the background (pid {self.pid}); output in {self.log}"
