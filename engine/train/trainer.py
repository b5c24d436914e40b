"""A training run: a typed config in, plain events out. The trainer sets the run up (device,
process group, data, model, resume, run directory) and reports how it ended; the step loop
itself is engine/train/loop.py, the data-parallel pieces engine/ranks/group.py.

A little over 300 lines, on purpose: set-up is one ordered sequence (each step may fail with its
own one-line cause, and a stop may come during any of them), kept in one place."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.data.pipeline import BatchSource, TensorBatches
from engine.data.sources import DataBundle, load_data
from engine.ranks.group import World, join, leave, lost_a_rank
from engine.ranks.plan import distributed_problem
from engine.run import events as ev
from engine.run.config import TrainConfig
from engine.run.control_socket import ControlServer, process_start_time
from engine.run.controls import Controls
from engine.run.errors import ConfigError, UserError, first_line
from engine.run.events import Phase
from engine.run.run_writer import RunDirSink
from engine.run.rundir import CHECKPOINTS, check_target, default_run_dir
from engine.run.summary import SummaryKeeper
from engine.train.checkpoint import CheckpointStore, load_checkpoint, restore_checkpoint
from engine.train.device import can_compile, gpu_uuids, resolve_device
from engine.train.ema import WeightEma
from engine.train.loop import TrainLoop
from engine.train.loop_parts import EpochStats, LoopParts, StopTraining
from engine.train.lr_find import find_lr
from engine.train.models import build_model
from engine.train.optim import make_optimizer
from engine.train.setup import (
    batch_sources,
    check_classes,
    check_resumable,
    merge_resume_config,
    run_started,
    step_and_eval_models,
)
from engine.train.state import TrainState
from engine.train.steering import Steering

Sink = Callable[[ev.Event], None]


class Trainer:
    """Runs one training job. ``run`` emits events to ``sink`` and returns the Finished event.

    User errors (bad data, failed download, bad checkpoint) are emitted as Failed and
    re-raised as UserError; anything else as Failed(error='crash') and re-raised.
    """

    def __init__(self, cfg: TrainConfig, sink: Sink, controls: Controls | None = None) -> None:
        self.cfg = cfg
        self.controls = controls or Controls()
        self._sink = sink
        self.run_sink: RunDirSink | None = None
        self._setup_events: list[ev.Event] = []  # said before the run directory existed (skipped files...)
        self.summary: SummaryKeeper | None = None
        self.state = TrainState()  # where the run is (the loop moves it on)
        self.run_dir = Path()
        self.control: ControlServer | None = None
        self._emit_lock = threading.RLock()
        self._phase = "setup"  # setup (nothing on disk yet) -> run, or -> abandoned by a stop during setup
        self._phase_lock = threading.Lock()
        self._unstarted: ev.Finished | None = None  # the report of a run stopped during setup
        self._began = time.perf_counter()
        self.status_every_s = 2.0  # how often a long evaluation says how far it is
        self.world = World()  # one process unless torchrun launched several (engine/ranks/group.py)
        self.compiles = False  # torch.compile in use (decided once the device is known)

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        if not self.world.is_main:  # rank 0 speaks for the run; another rank only says why it failed
            if isinstance(event, ev.Failed):
                print(f"cifar-tui: rank {self.world.rank}: {event.message}", file=sys.stderr, flush=True)
                if event.error != "rank_lost":  # its own failure, not a peer's that it noticed
                    self.world.last_words(event.error, event.message)
            return
        with self._emit_lock:  # the control server's thread emits too
            # summary.json first: a reader that saw an event (a `pause` waiting for Paused) and
            # then reads the summary (the next `pause`, asking "already paused?") finds it there.
            if self.summary is not None:
                self.summary(event)
            if self.run_sink is not None:
                self.run_sink(event)
            elif len(self._setup_events) < 1000:  # written first once the run directory opens
                self._setup_events.append(event)
            self._sink(event)

    def status(self, state: str, message: str = "") -> None:
        self.emit(ev.Status(state, message))

    def notify(self, kind: str, message: str) -> None:
        """Callback for data/model loaders: a phase change or a log line."""
        if kind in ("info", "warning", "error"):
            self.emit(ev.Log(message, level=kind))
        else:
            self.status(kind, message)

    # -- entry point -------------------------------------------------------------------------
    def run(self) -> ev.Finished:
        try:
            return self._run()
        except UserError as exc:
            self._fail(exc.kind, str(exc), detail=getattr(exc, "resource", ""))
            raise
        except torch.OutOfMemoryError as exc:
            bs = self.cfg.batch_size
            msg = f"out of GPU memory at batch size {bs}; try --batch-size {max(1, bs // 2)}"
            self._fail("out_of_memory", msg, traceback.format_exc())
            raise UserError(msg) from exc
        except FloatingPointError as exc:
            self._fail("diverged", f"training diverged: {exc} (try a lower --lr or a longer --warmup-epochs)"
                                   + self._last_good())  # fmt: skip
            raise
        except Exception as exc:
            # Several ranks: a peer's failure reaches rank 0 as whatever broke first here (a
            # collective, or a DataLoader worker the launcher stopped as it ended the group), so
            # rank 0 names the rank that failed or went silent (its last words, its silence).
            named = self.world.who_failed() if self.world.is_distributed and self.world.is_main else None
            if named is not None:
                self._fail(named[0], named[1] + self._last_good(), traceback.format_exc())
            elif self.world.is_distributed and lost_a_rank(exc):
                self._fail("rank_lost", f"another training process died or stopped answering ({first_line(exc)})"
                                        + self._last_good(), traceback.format_exc())  # fmt: skip
            else:
                self._fail("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())
            raise
        finally:
            if self.control is not None:
                self.control.close()
            if self.run_sink is not None:
                self.run_sink.close()
            leave(self.world)

    def end_if_not_started(self, cause: str) -> bool:
        """A stop while downloading, decoding or building: report the run stopped and return True
        (the caller may then end the process at once: nothing is trained, nothing is on disk).
        False once the run directory is in use: the stop is honoured at the next batch."""
        with self._phase_lock:
            if self._phase != "setup":
                return False
            self._phase = "abandoned"
        self._report_unstarted(cause)
        return True

    def _report_unstarted(self, cause: str) -> None:
        self.status(Phase.STOPPED, f"stopped before training began ({cause})")
        self._unstarted = ev.Finished("stopped", 0, 0, None, None, time.perf_counter() - self._began, cause=cause)
        self.emit(self._unstarted)

    def _enter_run(self) -> bool:
        """Leave setup for the run directory; False if a stop came first (then nothing is written)."""
        with self._phase_lock:
            if self._phase == "abandoned":
                return False
            if self.controls.stop_requested:
                self._phase = "abandoned"
                self._report_unstarted(self.controls.stop_cause)
                return False
            self._phase = "run"
            return True

    def _last_good(self) -> str:
        """Where a failed run can go on from (rank 0 writes the checkpoints; another rank's
        message leaves it to rank 0's)."""
        return f"; last good checkpoint: {self.state.last_checkpoint or 'none yet'}" if self.world.is_main else ""

    def _fail(self, error: str, message: str, tb: str = "", detail: str = "") -> None:
        self.status(Phase.FAILED, message)
        self.emit(ev.Failed(error, message, tb, detail))

    def _run(self) -> ev.Finished:
        cfg = self.cfg
        started = time.perf_counter()
        ckpt: dict[str, Any] | None = None
        if cfg.resume:
            ckpt = load_checkpoint(Path(cfg.resume))
            cfg = self.cfg = merge_resume_config(cfg, ckpt["config"])
            check_resumable(ckpt, cfg)
        device = resolve_device(cfg.device)
        world = self.world = join(device.type, cfg.rank_timeout)
        if world.is_distributed and device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(device)
        # Again with the device found (--device auto on a CPU), and for torchrun run by hand.
        if world.is_distributed and (
            problem := distributed_problem(cfg.with_overrides(device=device.type), world.size)
        ):
            raise ConfigError(problem)
        # One decision for the data sources (one shape per step) and the step.
        self.compiles = cfg.compile and can_compile(device)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        resuming_here = check_target(cfg) if world.is_main else False  # rank 0 owns the run directory
        torch.manual_seed(cfg.seed)
        if device.type == "cuda":
            # Fixed shapes (one batch size, one image size): let cuDNN time its algorithms once and pick the fastest.
            torch.backends.cudnn.benchmark = True

        self.status(Phase.LOADING_DATA, f"loading {cfg.data}")
        data = load_data(cfg, self.notify)
        if ckpt is not None:
            check_classes(ckpt, cfg, data.class_names)
        self.status(Phase.BUILDING_MODEL, f"building {cfg.arch}")
        model_cfg = cfg.with_overrides(weights="none") if ckpt is not None else cfg
        model = build_model(model_cfg, len(data.class_names), self.notify).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(cfg, model)
        train_src, test_src = batch_sources(cfg, data, device, self.world, self.compiles)
        if train_src.steps_per_epoch == 0:
            raise ConfigError(f"{len(data.train)} training image(s) make no batch of at least 2 "
                              f"(BatchNorm cannot train on one); use more images or a smaller --batch-size")  # fmt: skip
        steering = Steering(cfg, train_src.steps_per_epoch, self.state.steer)
        # A plain function, not the object: LambdaLR would try to keep an object's state in its own.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: steering.lr_lambda(step))
        stats = EpochStats.zeros(device)
        ema = WeightEma(model, cfg.ema) if cfg.ema > 0 else None
        if ckpt is not None:
            self._restore(ckpt, model, optimizer, scheduler, ema, stats, train_src.steps_per_epoch)
            steering.load(cfg, train_src.steps_per_epoch, self.state.steer)  # the checkpoint's plan
            cfg, replan = steering.resumed_with(cfg, self.state, scheduler)
            if replan is not None:  # --epochs given on resume: the rest of the schedule re-planned
                self.cfg = cfg
                self.emit(replan)

        if not self._enter_run():
            assert self._unstarted is not None
            return self._unstarted
        self.state.start_global_step = self.state.global_step
        ranks = world.gather((gpu_uuids(device), platform.node(), os.getpid()))
        uuids = [u for rank_uuids, _host, _pid in ranks for u in rank_uuids]
        pids = [pid for _uuids, host, pid in ranks if host == ranks[0][1]]  # pids mean nothing elsewhere
        if not world.is_main:
            return self._run_loop(
                cfg, model, optimizer, scheduler, train_src, test_src, data, device, ema, stats, started, steering
            )
        self.run_sink = RunDirSink(
            run_dir, overwrite=cfg.overwrite, resuming_here=resuming_here, unique=not cfg.run_dir,
            on_error=lambda m: self._sink(ev.Log(m, level="error")),
        )  # fmt: skip
        setup, self._setup_events = self._setup_events, []
        for event in setup:  # held by the sink until it opens, then written first
            self.run_sink(event)
        self.run_sink.open(cfg)
        run_dir = self.run_sink.path
        self.run_dir = run_dir
        self.summary = SummaryKeeper(run_dir)
        for event in setup:  # a re-plan on resume is part of the run's story too
            self.summary(event)
        self._open_control(run_dir)
        self.emit(run_started(run_dir, cfg, device, data, train_src, self.state, model, uuids, world.size, pids))
        return self._run_loop(
            cfg, model, optimizer, scheduler, train_src, test_src, data, device, ema, stats, started, steering
        )

    def _run_loop(self, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: torch.optim.lr_scheduler.LambdaLR, train_src: BatchSource, test_src: TensorBatches,
                  data: DataBundle, device: torch.device, ema: WeightEma | None, stats: EpochStats,
                  started: float, steering: Steering) -> ev.Finished:  # fmt: skip
        world = self.world
        if cfg.compile and not self.compiles:
            self.emit(ev.Log(f"--compile is for CUDA; training uncompiled on {device.type}", level="warning"))
        if cfg.sync_bn and not world.is_distributed:
            self.emit(ev.Log("--sync-bn: one process already normalises over the whole batch"))
        model, step_model, eval_model = step_and_eval_models(cfg, model, device, world, self.compiles)
        parts = LoopParts(model, step_model, eval_model, optimizer, scheduler, train_src, test_src, data, device,
                          steering, ema)  # fmt: skip
        store = CheckpointStore(self.run_dir / CHECKPOINTS, cfg.keep) if world.is_main else None
        loop = TrainLoop(self, cfg, parts, store)
        loop.compiling = loop.eval_compiling = self.compiles
        reason, cause = "completed", ""
        try:
            if cfg.lr_find and not cfg.resume:
                find_lr(self, loop, parts, self.run_dir)
            elif cfg.lr_find and "lr_find" in cfg.explicit:
                self.emit(ev.Log("--lr-find is for a new run: resuming without a range test", level="warning"))
            if cfg.lr_find == "only" and not cfg.resume:
                cause = "learning-rate range test only"
            else:
                loop.train(stats)
                cause = loop.stop_rule
        except StopTraining:
            reason, cause = "stopped", self.controls.stop_cause
        loop.gallery.wait()  # the last evaluation's gallery is on disk before the run says it ended
        if world.is_distributed:
            same = world.weights_agree(model)
            self.emit(ev.Log(f"{world.size} ranks hold identical weights" if same else
                             f"the {world.size} ranks' weights differ: a rank went its own way", level="info" if same else "error"))  # fmt: skip
        self.status(Phase.FINISHED if reason == "completed" else Phase.STOPPED)
        finished = ev.Finished(
            reason=reason,
            epochs_done=self.state.epoch,
            global_step=self.state.global_step,
            test_accuracy=self.state.last_eval.accuracy if self.state.last_eval else None,
            best_accuracy=self.state.best_accuracy,
            seconds=time.perf_counter() - started,
            checkpoint=self.state.last_checkpoint,
            cause=cause,
            unsaved=self.state.unsaved,
        )
        self.emit(finished)
        return finished

    def _open_control(self, run_dir: Path) -> None:
        """Let dashboards attach later: a control socket, and trainer.json saying how to reach it."""
        try:
            self.control = ControlServer(run_dir, self.controls, lambda m: self.emit(ev.Log(m, level="warning")))
            self.control.record({"started": process_start_time(), "host": platform.node()})
        except OSError as exc:  # training matters more than steering from elsewhere
            self.emit(ev.Log(f"no control socket ({exc}); attach will be read-only", level="warning"))

    def _restore(self, ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR, ema: WeightEma | None, stats: EpochStats,
                 steps: int) -> None:  # fmt: skip
        part = restore_checkpoint(ckpt, str(self.cfg.resume), model, optimizer, scheduler, ema, self.state, steps)
        # The saved partial epoch is every rank's together: rank 0 carries it on (the epoch's end sums the ranks).
        if self.world.is_main:
            stats.loss_total = float(part.get("loss_sum", 0.0))
            stats.correct_total = int(part.get("correct", 0))
            stats.seen = int(part.get("seen", 0))
            stats.seconds = float(part.get("seconds", 0.0))
        self.emit(ev.Log(f"resumed from {self.cfg.resume} at epoch {self.state.epoch + 1}, step {self.state.step}"))
