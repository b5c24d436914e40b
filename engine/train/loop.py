"""The step loop of a run: batches in, optimizer steps, reports, evaluations, checkpoints and
controls at batch boundaries. Several ranks run it in lockstep (engine/ranks/group.py).

Longer than this project's usual 300 lines, on purpose: it is the one hot path, read top to
bottom, and what happens at a batch boundary (controls, steering, evaluation, saving) is easier
to check for lockstep across ranks in one place than spread over modules."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.controls import Requests
from engine.run.events import Phase
from engine.run.steering import NO_ACT, SteerAct
from engine.run.wording import CountProgress
from engine.train.checkpoint import CheckpointStore, build_checkpoint, save_final
from engine.train.evaluate import EvalResult, EvaluationInterrupted, evaluate
from engine.train.loop_parts import EpochStats, LoopHost, LoopParts, StopTraining, all_finite, sync
from engine.train.mistakes import GalleryWriter, MistakeLog


class TrainLoop:
    """The epoch/step loop of one run. The trainer sets the run up (data, model, resume, run
    directory) and hands the loop its parts; the loop moves ``host.state`` on and speaks
    through ``host.emit``."""

    def __init__(self, host: LoopHost, cfg: TrainConfig, parts: LoopParts, store: CheckpointStore | None) -> None:
        self.host = host
        self.state = host.state
        self.world = host.world
        self.store = store  # rank 0's (it alone writes checkpoints; every rank resumes from them)
        self.cfg = cfg
        self.model = parts.model
        self.step_model = parts.step_model
        self.eval_model = parts.eval_model
        self.optimizer = parts.optimizer
        self.scheduler = parts.scheduler
        self.train_src = parts.train_src
        self.test_src = parts.test_src
        self.data = data = parts.data
        self.device = device = parts.device
        self.ema = parts.ema
        self.steering = parts.steering
        self.stop_rule = ""  # why a stop rule ended the run (early stop, target accuracy)
        self.num_classes = len(data.class_names)
        self.min_interval = 1.0 / cfg.progress_hz
        self.started = time.perf_counter()
        self.excluded = 0.0  # seconds paused or evaluating on request: not training time
        self.last_eval_seconds = 0.0
        self.gallery = GalleryWriter()  # the mistakes of each evaluation, written beside training
        # Cross-entropy starts near ln(C); a hundred times that means the weights have blown up
        # (a healthy run, warm-up spikes included, stays far below).
        self.explode_at = 100.0 * math.log(max(2, self.num_classes))
        # On a GPU the loss is read only at reports (a read waits for the device); the CPU
        # reads it every step for free. Tests drive the GPU branch on the CPU by clearing this.
        self.check_every_step = device.type == "cpu"
        self.compiling = False  # the next training step compiles (torch.compile)
        self.eval_compiling = False  # the next evaluation compiles
        self.compile_seconds_in_epoch = 0.0

    def _compiled(self, what: str, began: float) -> float:
        """Called after the first compiled call: wait for it, report how long compiling took."""
        sync(self.device)
        seconds = time.perf_counter() - began
        if what == "evaluation":
            self.eval_compiling = False
        else:
            self.compiling = False
        self.compile_seconds_in_epoch += seconds
        self.excluded += seconds  # compiling is not training: the pace and the ETA leave it out
        self.host.emit(ev.Log(f"torch.compile: {what} compiled in {seconds:.1f} s"))
        self.host.status(Phase.EVALUATING if what == "evaluation" else Phase.TRAINING)
        return seconds

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- controls ----------------------------------------------------------------------------
    def _agree(self) -> tuple[Requests, bool]:
        """The pending requests and the pause state; with several ranks, rank 0's, on every rank
        (one small host-side all-reduce per batch: all ranks act at the same step)."""
        controls = self.host.controls
        req, paused = controls.take(), controls.paused
        if not self.world.is_distributed:
            return req, paused
        steer = req.steer.packed() if req.steer is not None else NO_ACT
        save, evaluate, stop, save_on_stop, paused_i, *steer = self.world.agree(
            [req.save, req.evaluate, req.stop, req.save_on_stop, paused, *steer]
        )
        if stop and not controls.stop_requested:
            controls.stop(save=bool(save_on_stop), cause="stopped by rank 0")
        act = req.steer if self.world.is_main else SteerAct.unpacked(steer, source="")
        return Requests(bool(save), bool(evaluate), bool(stop), bool(save_on_stop), act), bool(paused_i)

    def handle_controls(self, stats: EpochStats) -> None:
        """Apply pending requests; block here while paused. Raises StopTraining."""
        controls = self.host.controls
        req, paused = self._agree()
        self._apply(stats, req)
        if not paused:
            return
        self.host.emit(ev.Paused(self.state.global_step))
        self.host.status(Phase.PAUSED, f"paused at step {self.state.global_step}")
        paused_at = time.perf_counter()
        while paused:
            if self.world.is_main:
                controls.wait_while_paused(0.25)
            req, paused = self._agree()
            self._apply(stats, req)
        self.excluded += time.perf_counter() - paused_at  # paused time is not training time
        self.host.emit(ev.Resumed(self.state.global_step))
        self.host.status(Phase.TRAINING)

    def _apply(self, stats: EpochStats, req: Requests | None = None) -> None:
        controls = self.host.controls
        req = req or controls.take()
        if req.steer is not None:
            self.cfg, event = self.steering.act(req.steer, self.cfg, self.state, self.scheduler)
            self.host.emit(event)
        if req.evaluate and not req.stop:
            try:
                self.run_evaluation("request")
            except EvaluationInterrupted:
                req = controls.take()  # the stop that interrupted it
        if req.stop and req.save_on_stop and self.state.global_step == self.state.start_global_step:
            self.host.emit(ev.Log("stopped before any training step: no checkpoint written"))
        elif req.save or (req.stop and req.save_on_stop):
            self.save("stop" if req.stop else "request", stats, final=req.stop)
        if req.stop:
            raise StopTraining

    # -- checkpoints and evaluation --------------------------------------------------------
    def save(self, reason: str, stats: EpochStats, *, best: bool = False, final: bool = False) -> None:
        """Write a checkpoint (rank 0). A failed write is reported and training goes on; a failed
        ``final`` one (the run ends next: its weights are nowhere else) is retried for a while first."""
        s = self.state
        self.host.status(Phase.SAVING, "writing checkpoint")
        stats.fold()
        # The epoch so far, every rank's share (each rank saves at the same step; rank 0 writes).
        part_loss, part_correct, part_seen = self.world.host_sum([stats.loss_total, stats.correct_total, stats.seen])
        state = build_checkpoint(
            self.model,
            self.optimizer,
            self.scheduler,
            self.ema,
            s,
            self.cfg,
            self.data.class_names,
            {"loss_sum": part_loss, "correct": int(part_correct), "seen": int(part_seen), "seconds": stats.seconds},
        )
        if not all_finite(self.model):
            raise FloatingPointError(f"weights or BatchNorm statistics are no longer finite at step {s.global_step}; "
                                     "not saving them")  # fmt: skip
        if self.store is None:  # not rank 0
            return
        if final and s.unsaved:
            return  # this run's end already failed to save and was given up (the stop that gave it up asks again)
        try:
            path = self.store.save(state, best=best) if not final else self._save_final(state, best)
        except OSError as exc:  # disk full, read-only folder...: report, keep training, older files intact
            why = exc.strerror or str(exc)
            if final:
                s.unsaved = f"the final checkpoint was NOT saved ({why})"
            else:
                self.host.emit(ev.Log(f"checkpoint NOT saved ({why}); training continues; "
                               f"last good checkpoint: {s.last_checkpoint or 'none yet'}", level="error"))  # fmt: skip
        else:
            s.unsaved, s.saved_step = "", s.global_step
            s.last_checkpoint = str(path)
            size = path.stat().st_size
            self.host.emit(ev.CheckpointSaved(str(path), s.epoch, s.step, s.global_step, reason, size))
            if best:
                self.host.emit(ev.CheckpointSaved(str(path), s.epoch, s.step, s.global_step, "best", size))
        self.host.status(Phase.PAUSED if self.host.controls.paused else Phase.TRAINING)

    def _save_final(self, state: dict[str, Any], best: bool) -> Path:
        assert self.store is not None
        wait = self.cfg.save_wait
        if self.world.is_distributed:  # the other ranks wait in a collective that times out
            wait = min(wait, max(0.0, self.cfg.rank_timeout - 30.0))
        lost = self.state.global_step - max(self.state.saved_step, self.state.start_global_step)
        return save_final(self.store, state, best, wait, self.host.controls, self.host.emit, self.host.status, lost)

    def run_evaluation(self, reason: str) -> EvalResult:
        s = self.state
        self.host.status(Phase.EVALUATING, f"evaluating on {len(self.data.test)} test images")
        began = time.perf_counter()
        model = self.ema.model if self.ema is not None else self.eval_model
        self.world.share_buffers_(model)  # several ranks: rank 0's BatchNorm statistics on each
        # A long evaluation on a CPU is visible: count, rate and ETA every few seconds.
        progress = CountProgress("evaluating:", "test images", len(self.data.test),
                                 lambda m: self.host.status(Phase.EVALUATING, m), self.host.status_every_s)  # fmt: skip
        compiled = 0.0
        if self.eval_compiling and model is self.eval_model:
            self.host.status(Phase.COMPILING, "torch.compile: compiling the evaluation graph")

        def on_batch(done: int) -> None:
            nonlocal compiled
            if self.eval_compiling and model is self.eval_model:
                compiled = self._compiled("evaluation", began)
            progress.update(done)

        # Ranks evaluate their shares and sum the counts; a stop waits for the end (all ranks agree).
        should_stop = (lambda: False) if self.world.is_distributed else (lambda: self.host.controls.stop_requested)
        mistakes = MistakeLog()
        result = evaluate(model, self.test_src, self.num_classes, autocast=self.autocast, tta=self.cfg.tta,
                          tta_translate=self.cfg.tta_translate, should_stop=should_stop, on_batch=on_batch,
                          reduce=self.world.all_reduce_ if self.world.is_distributed else None,
                          predictions=mistakes.add)  # fmt: skip
        seconds = time.perf_counter() - began - compiled
        if not math.isfinite(result.loss):
            raise FloatingPointError(f"test loss became {result.loss} after epoch {s.epoch + 1}, step {s.step}")
        self.gallery.keep(self.host, mistakes, self.data, result.accuracy)  # (a diverged model's: none)
        self.last_eval_seconds = seconds
        if reason == "request":
            self.excluded += seconds
        s.last_eval = result
        self.host.emit(
            ev.Evaluation(
                epoch=s.epoch, step=s.step, global_step=s.global_step, loss=result.loss, accuracy=result.accuracy,
                per_class=result.per_class, confusion=result.confusion, class_names=list(self.data.class_names),
                seconds=seconds, reason=reason,
            )
        )  # fmt: skip
        self.host.status(Phase.PAUSED if self.host.controls.paused else Phase.TRAINING)
        return result

    # -- the loop ------------------------------------------------------------------------------
    def train(self, stats: EpochStats) -> None:
        s = self.state
        self.host.status(Phase.TRAINING, f"training for {self.cfg.epochs} epochs")
        self.model.train()
        while s.epoch < self.cfg.epochs:  # steering may change the length at any boundary
            epoch_began = time.perf_counter() - stats.seconds
            excluded_before = self.excluded
            self.train_epoch(stats)
            train_seconds = time.perf_counter() - epoch_began - (self.excluded - excluded_before)
            try:
                result = self.run_evaluation("epoch")
            except EvaluationInterrupted:
                self._apply(stats)  # saves the epoch's training if asked, then stops
                raise StopTraining from None
            is_best = s.best_accuracy is None or result.accuracy > s.best_accuracy
            s.best_accuracy = max(result.accuracy, s.best_accuracy or 0.0)
            stats.fold()
            # Every rank's share of the epoch (a no-op in one process).
            loss_total, correct_total, seen_total = self.world.host_sum(
                [stats.loss_total, stats.correct_total, stats.seen]
            )
            seen = max(seen_total, 1)
            self.host.emit(
                ev.EpochEnd(
                    epoch=s.epoch + 1, epochs=self.cfg.epochs, train_loss=loss_total / seen,
                    train_accuracy=correct_total / seen, test_loss=result.loss, test_accuracy=result.accuracy,
                    images_per_sec=seen_total / max(train_seconds, 1e-9), seconds=train_seconds,
                    eval_seconds=self.last_eval_seconds,
                    lr=self.optimizer.param_groups[0]["lr"], compile_seconds=self.compile_seconds_in_epoch,
                )
            )  # fmt: skip
            self.compile_seconds_in_epoch = 0.0
            s.epoch, s.step = s.epoch + 1, 0
            stats = EpochStats.zeros(self.device)
            self.stop_rule = self.steering.stop_rule(self.cfg, result.accuracy, s.epoch)
            self.save("epoch", stats, best=is_best, final=s.epoch >= self.cfg.epochs or bool(self.stop_rule))
            if self.stop_rule:
                return  # a stop rule fired: the run is complete (the trainer reports the rule)
            self.handle_controls(stats)

    def _timed_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        it = iter(self.train_src.batches(self.state.epoch, start_step))
        while True:
            began = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            yield x, y, time.perf_counter() - began

    def train_epoch(self, stats: EpochStats) -> None:
        s, cfg = self.state, self.cfg
        steps = self.train_src.steps_per_epoch
        epoch_began = time.perf_counter() - stats.seconds
        last_emit = time.perf_counter()
        emitted_images, wait = 0, 0.0
        interval_loss = torch.zeros((), device=self.device)
        interval_n = 0
        self.handle_controls(stats)
        if self.compiling:
            self.host.status(Phase.COMPILING, "torch.compile: compiling the training step (tens of seconds)")
        for x, y, waited in self._timed_batches(s.step):
            step_began = time.perf_counter()
            with self.autocast():
                logits = self.step_model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
            if self.compiling:
                self._compiled("training step", step_began)
            batch = int(y.shape[0])
            detached = loss.detach()
            stats.add(detached, (logits.detach().argmax(1) == y).sum(), batch)
            interval_loss += detached.float()
            interval_n += 1
            s.step += 1
            s.global_step += 1
            emitted_images += batch
            wait += waited
            now = time.perf_counter()
            boundary = s.step % cfg.log_every == 0
            report = boundary or s.step == steps or now - last_emit >= self.min_interval
            # Reading the device waits for it: on a GPU the loop reads only at a report (at most
            # progress_hz times a second), all it needs in one read; on the CPU reading is free.
            if report:
                loss_value, interval_sum, partial_loss = torch.stack(
                    [detached.float(), interval_loss, stats.partial_loss]
                ).tolist()
                stats.fold((partial_loss, int(stats.partial_correct)))
            elif self.check_every_step:
                loss_value = float(detached)
            if (report or self.check_every_step) and (not math.isfinite(loss_value) or loss_value > self.explode_at):
                what = f"became {loss_value}" if not math.isfinite(loss_value) else f"exploded to {loss_value:.4g}"
                raise FloatingPointError(f"loss {what} at epoch {s.epoch + 1}, step {s.step}")
            if report:
                span = max(now - last_emit, 1e-9)
                self.host.emit(
                    ev.Progress(
                        epoch=s.epoch, epochs=self.cfg.epochs, step=s.step, steps_per_epoch=steps,
                        global_step=s.global_step, loss=loss_value, lr=self.optimizer.param_groups[0]["lr"],
                        images_per_sec=emitted_images * self.world.size / span, data_wait=min(1.0, wait / span),
                        elapsed=now - self.started - self.excluded,
                        interval_loss=interval_sum / interval_n if boundary else None,
                    )
                )  # fmt: skip
                if boundary:
                    interval_loss.zero_()
                    interval_n = 0
                last_emit, emitted_images, wait = now, 0, 0.0
            stats.seconds = time.perf_counter() - epoch_began
            if s.step < steps:
                self.handle_controls(stats)
                if cfg.eval_every and s.global_step % cfg.eval_every == 0:  # the same step on every rank
                    with contextlib.suppress(EvaluationInterrupted):  # a stop: taken at the next boundary
                        self.run_evaluation("interval")
