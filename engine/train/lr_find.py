"""The learning-rate range test (``--lr-find``, ``cifar-tui lr-find``): train ~100 steps while
the LR rises exponentially from ``start`` to ``end``, record each batch's loss, stop once the
smoothed loss passes 4x its best, and suggest an LR (engine/run/lr_suggest.py). Everything the
test touches is put back exactly afterwards (weights, BatchNorm statistics, optimizer state,
schedule, RNG streams; the data order comes from (seed, epoch) and is not touched), so the run
that follows is the run that was asked for."""

from __future__ import annotations

import copy
import itertools
import math
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from engine.run import events as ev
from engine.run import wire
from engine.run.controls import Controls
from engine.run.events import Phase
from engine.run.fileio import atomic_write_json
from engine.run.lr_suggest import RunningSmooth, Suggestion, smooth, suggest
from engine.run.steering import LR_FINDER, LR_SCALE, SteerAct
from engine.train.checkpoint import rng_state, set_rng_state
from engine.train.loop import TrainLoop
from engine.train.loop_parts import LoopParts, StopTraining

START, END, STEPS = 1e-7, 10.0, 100  # the defaults of --lr-find-start, --lr-find-end, --lr-find-steps


@dataclass(frozen=True)
class RangeTest:
    """What a range test measured."""

    lrs: list[float]
    losses: list[float]
    suggestion: Suggestion | None
    seconds: float
    interrupted: bool = False
    """A stop came before the test ended: a partial record, and no suggestion from it."""

    @property
    def smoothed(self) -> list[float]:
        return smooth(self.losses)


class Snapshot:
    """Everything a range test changes, copied so that it can be put back bit for bit."""

    def __init__(self, parts: LoopParts) -> None:
        self.parts = parts
        self.model = copy.deepcopy(parts.model.state_dict())  # weights and BatchNorm statistics
        self.optimizer = copy.deepcopy(parts.optimizer.state_dict())  # its groups' LRs too
        self.scheduler = copy.deepcopy(parts.scheduler.state_dict())
        self.rng: dict[str, Any] = rng_state()
        self.py_rng = random.getstate()

    def restore(self) -> None:
        p = self.parts
        p.model.load_state_dict(self.model)
        p.optimizer.load_state_dict(self.optimizer)
        p.scheduler.load_state_dict(self.scheduler)
        p.model.zero_grad(set_to_none=True)
        set_rng_state(self.rng)
        random.setstate(self.py_rng)


def _batches(parts: LoopParts) -> Generator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches from the first epoch on (as many epochs as the test needs)."""
    for epoch in itertools.count():
        yield from parts.train_src.batches(epoch, 0)


def range_test(parts: LoopParts, *, label_smoothing: float = 0.0, start: float = START, end: float = END,
               steps: int = STEPS, autocast: Callable[[], Any] | None = None,
               on_step: Callable[[int, float, float], None] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> RangeTest:  # fmt: skip
    """Run the test on ``parts`` and put them back as they were; ``on_step(i, lr, loss)`` reports."""
    snapshot = Snapshot(parts)
    began = time.perf_counter()
    lrs: list[float] = []
    losses: list[float] = []
    running = RunningSmooth()
    parts.model.train()
    batches = _batches(parts)
    interrupted = False
    try:
        for i, (x, y) in zip(range(steps), batches, strict=False):
            if should_stop():
                interrupted = True
                break
            lr = start * (end / start) ** (i / max(1, steps - 1))
            for group in parts.optimizer.param_groups:
                group["lr"] = lr
            with autocast() if autocast is not None else torch.autocast("cpu", enabled=False):
                logits = parts.step_model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts.optimizer.step()
            value = float(loss.detach())  # one read per step: the test needs every loss to decide when to stop
            lrs.append(lr)
            losses.append(value)
            if on_step is not None:
                on_step(i, lr, value)
            if not math.isfinite(value) or running.diverged(running.add(value)):
                break  # diverged: the rest of the range says nothing more
    finally:
        batches.close()  # a DataLoader's workers end here, not with the run
        snapshot.restore()
    suggestion = suggest(lrs, losses) if lrs and not interrupted else None
    return RangeTest(lrs, losses, suggestion, time.perf_counter() - began, interrupted)


class FinderHost(Protocol):
    """What the finder needs of the run around it (the trainer)."""

    controls: Controls

    def emit(self, event: ev.Event) -> None: ...

    def status(self, state: str, message: str = "") -> None: ...


RESULT_FILE = "lr_find.json"


def find_lr(host: FinderHost, loop: TrainLoop, parts: LoopParts, run_dir: Path) -> None:
    """The range test before a run's first step, as ``--lr-find`` asks: its record written to the
    run directory and said as an LrFound event; with ``use`` the run then trains at the
    suggestion (a multiplier on --lr, a steering act), with ``ask`` it pauses for a dashboard."""
    cfg = loop.cfg
    said = [-math.inf]
    steps = cfg.lr_find_steps

    def on_step(i: int, lr: float, loss: float) -> None:
        if time.monotonic() - said[0] >= 2.0:  # a slow test is visible as it goes
            said[0] = time.monotonic()
            host.status(Phase.FINDING_LR, f"lr-find: step {i + 1}/{steps} · lr {lr:.2e} · loss {loss:.4f}")

    host.status(Phase.FINDING_LR, f"lr-find: up to {steps} steps, lr {cfg.lr_find_start:g} to {cfg.lr_find_end:g}")
    test = range_test(parts, label_smoothing=cfg.label_smoothing, start=cfg.lr_find_start, end=cfg.lr_find_end,
                      steps=steps, autocast=loop.autocast, on_step=on_step,
                      should_stop=lambda: host.controls.stop_requested)  # fmt: skip
    s = test.suggestion
    event = ev.LrFound(
        lrs=test.lrs, losses=test.losses, smoothed=test.smoothed, valley=s.valley if s else None,
        steepest=s.steepest if s else None, minimum_tenth=s.minimum_tenth if s else None, lr=cfg.lr,
        seconds=test.seconds, asks=cfg.lr_find == "ask" and s is not None, steps=steps, interrupted=test.interrupted,
    )  # fmt: skip
    try:
        atomic_write_json(run_dir / RESULT_FILE, wire.to_dict(event))
    except OSError as exc:  # the run matters more than the record of its finder
        host.emit(ev.Log(f"lr-find: {RESULT_FILE} not written ({exc.strerror or exc})", level="warning"))
    if test.interrupted:  # the run ends as stopped, its finder's record marked partial
        host.emit(event)
        raise StopTraining
    if event.asks:  # paused before it is said: an answer can never come before the pause it ends
        host.controls.pause()  # the dashboard answers with a multiplier (or none) and a resume
    host.emit(event)
    if s is not None and cfg.lr_find == "use":
        act = SteerAct(LR_SCALE, s.valley / cfg.lr, 0.0, LR_FINDER)
        loop.cfg, steered = loop.steering.act(act, loop.cfg, loop.state, parts.scheduler)
        host.emit(steered)
    host.status(Phase.TRAINING)
