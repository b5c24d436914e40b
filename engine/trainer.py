"""The training loop: a typed config in, plain events out, controls at batch boundaries."""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine import events as ev
from engine.checkpoint import CheckpointStore, load_checkpoint, rng_state, set_rng_state
from engine.config import TrainConfig, seeds_augmentation, validate
from engine.control_socket import ControlServer, process_start_time
from engine.controls import Controls, Requests
from engine.data import DataBundle, load_data
from engine.distributed import World, join, leave
from engine.ema import WeightEma
from engine.errors import CheckpointError, ConfigError, UserError
from engine.evaluate import EvalResult, EvaluationInterrupted, evaluate
from engine.launch import distributed_problem
from engine.models import build_model
from engine.pipeline import Augmentation, BatchSource, LoaderBatches, TensorBatches
from engine.run_summary import SummaryKeeper
from engine.rundir import CHECKPOINTS, RunDirSink, check_target, checkpoint_run_dir, default_run_dir
from engine.wording import CountProgress

Sink = Callable[[ev.Event], None]

#: Options that may differ from the checkpoint's config when resuming.
RESUME_MAY_CHANGE = frozenset(
    {"epochs", "device", "run_dir", "runs_root", "log_every", "progress_hz", "workers", "eval_batch_size",
     "data_dir", "resume", "overwrite", "compile", "loader", "explicit", "keep", "rank_timeout", "sync_bn"}
)  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA GPU is available on this machine; use --device cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def resolve_loader(cfg: TrainConfig, device: torch.device) -> str:
    """``auto``: the seed's DataLoader + PIL path for the tutorial recipe on a CPU (its exact
    mechanics); the tensor pipeline everywhere else, the tutorial on a GPU included (the same
    augmentation distribution, see engine/pipeline.py, without a GPU waiting on PIL)."""
    if cfg.loader != "auto":
        return cfg.loader
    if cfg.recipe == "tutorial" and device.type == "cpu" and seeds_augmentation(cfg):
        return "dataloader"
    return "tensor"


def gpu_uuids(device: torch.device) -> list[str]:
    """The training GPU's UUID as NVML spells it (no ``GPU-`` prefix, lower case); [] elsewhere."""
    if device.type != "cuda":
        return []
    try:
        return [ev.normal_uuid(str(torch.cuda.get_device_properties(device).uuid))]
    except (AttributeError, RuntimeError):  # an old torch without .uuid, a device that went away
        return []


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return device.type


def merge_resume_config(cfg: TrainConfig, saved: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config with the user's explicit options on top (only those that may change)."""
    base = TrainConfig.from_dict(saved)
    changes = {name: getattr(cfg, name) for name in cfg.explicit if name not in ("recipe", "resume")}
    fixed = sorted(n for n, v in changes.items() if n not in RESUME_MAY_CHANGE and getattr(base, n) != v)
    if fixed:
        raise ConfigError(
            f"--{fixed[0].replace('_', '-')} cannot change when resuming (the checkpoint used {getattr(base, fixed[0])!r})"
        )
    # Where to write: the user's --run-dir, else the checkpoint's own run (wherever we are run
    # from), else a new run directory; never the saved (maybe relative) path, never a non-run folder.
    own = checkpoint_run_dir(Path(cfg.resume))
    run_dir = cfg.run_dir if cfg.run_dir else str(own) if own is not None else ""
    merged = base.with_overrides(
        **{n: v for n, v in changes.items() if n in RESUME_MAY_CHANGE and n != "run_dir"},
        resume=cfg.resume,
        run_dir=run_dir,
    )
    validate(merged)
    return merged


def _param_groups(model: nn.Module, weight_decay: float, decay_norms: bool = False) -> list[dict[str, Any]]:
    """No weight decay on norm weights and biases (1-d tensors) unless ``decay_norms``."""
    if decay_norms:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg.weight_decay, cfg.decay_norms)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


#: The triangular schedule starts at this share of the peak learning rate (as airbench's).
TRIANGULAR_START = 0.2


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Warm-up length in steps: at most half the run, so a warm-up longer than a short run
    still leaves it a decay instead of ending at (or diverging from) the peak."""
    total = max(1, cfg.epochs * steps_per_epoch)
    return min(total // 2, int(cfg.warmup_epochs * steps_per_epoch))


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step LR multiplier for the configured schedule (warm-up first where set)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = warmup_steps(cfg, steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.schedule == "constant":
            return 1.0
        if step < warm:
            if cfg.schedule == "triangular":
                return TRIANGULAR_START + (1.0 - TRIANGULAR_START) * step / warm
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if cfg.schedule in ("linear", "triangular"):
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine and onecycle

    return factor


@dataclass
class _EpochStats:
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
    def zeros(cls, device: torch.device) -> _EpochStats:
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


def _lost_a_rank(exc: BaseException) -> bool:
    """A collective that failed because a peer went away (killed, crashed) or timed out."""
    backend_error = getattr(torch.distributed, "DistBackendError", ())
    text = str(exc)
    return isinstance(exc, backend_error) or (
        isinstance(exc, RuntimeError)
        and any(k in text for k in ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out"))
    )


def can_compile(device: torch.device) -> bool:
    """torch.compile pays off (and is tested by us) on CUDA only."""
    return device.type == "cuda"


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile with static shapes: every training batch has one shape (the compiled
    recipes drop the ragged last batch) and so does every evaluation batch (the last is padded),
    so it compiles once for training and once for evaluation, and never again."""
    return torch.compile(model, dynamic=False)  # type: ignore[return-value]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (for timing only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StopTraining(Exception):
    """Raised inside the loop when a stop request is honoured."""


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
        self.summary: SummaryKeeper | None = None
        self.global_step = 0
        self.epoch = 0
        self.step = 0
        self.best_accuracy: float | None = None
        self.last_eval: EvalResult | None = None
        self.last_checkpoint = ""
        self.run_dir = Path()
        self.control: ControlServer | None = None
        self._emit_lock = threading.RLock()
        self._phase = "setup"  # setup (nothing on disk yet) -> run, or -> abandoned by a stop during setup
        self._phase_lock = threading.Lock()
        self._unstarted: ev.Finished | None = None  # the report of a run stopped during setup
        self._began = time.perf_counter()
        self.start_global_step = 0  # where this process started (a resume starts later)
        self.status_every_s = 2.0  # how often a long evaluation says how far it is
        self.world = World()  # one process unless torchrun launched several (engine/distributed.py)
        self.compiles = False  # torch.compile in use (decided once the device is known)

    # -- events ---------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        if not self.world.is_main:  # rank 0 speaks for the run; another rank only says why it failed
            if isinstance(event, ev.Failed):
                print(f"cifar-tui: rank {self.world.rank}: {event.message}", file=sys.stderr, flush=True)
                self.world.last_words(event.error, event.message)
            return
        with self._emit_lock:  # the control server's thread emits too
            if self.run_sink is not None:
                self.run_sink(event)
            if self.summary is not None:
                self.summary(event)
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
            if self.world.is_distributed and _lost_a_rank(exc):
                # Name the rank and its cause where it can be known (its last words, or its silence).
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                kind, why = (self.world.who_failed() if self.world.is_main else None) or (
                    "rank_lost", f"another training process died or stopped answering ({first})")  # fmt: skip
                self._fail(kind, why + self._last_good(), traceback.format_exc())
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
        self.status("stopped", f"stopped before training began ({cause})")
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
        return f"; last good checkpoint: {self.last_checkpoint or 'none yet'}" if self.world.is_main else ""

    def _fail(self, error: str, message: str, tb: str = "", detail: str = "") -> None:
        self.status("failed", message)
        self.emit(ev.Failed(error, message, tb, detail))

    def _run(self) -> ev.Finished:
        cfg = self.cfg
        started = time.perf_counter()
        ckpt: dict[str, Any] | None = None
        if cfg.resume:
            ckpt = load_checkpoint(Path(cfg.resume))
            cfg = self.cfg = merge_resume_config(cfg, ckpt["config"])
            if int(ckpt["epoch"]) >= cfg.epochs:
                raise ConfigError(
                    f"checkpoint {cfg.resume} already trained {ckpt['epoch']} epochs; pass --epochs N "
                    f"with N > {ckpt['epoch']} to train further"
                )
        device = resolve_device(cfg.device)
        world = self.world = join(device.type, cfg.rank_timeout)
        if world.is_distributed and device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(device)
        if world.is_distributed and (problem := distributed_problem(cfg, world.size)):
            raise ConfigError(problem)  # launched by torchrun directly: the launcher's check did not run
        if world.is_distributed and cfg.sync_bn and device.type != "cuda":  # --device auto found no GPU
            raise ConfigError(f"--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on {device.type})")
        # One decision for the data sources (one shape per step) and the step.
        self.compiles = cfg.compile and can_compile(device)
        run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        resuming_here = check_target(cfg) if world.is_main else False  # rank 0 owns the run directory
        torch.manual_seed(cfg.seed)
        if device.type == "cuda":
            # Fixed shapes (one batch size, one image size): let cuDNN time its algorithms once and pick the fastest.
            torch.backends.cudnn.benchmark = True

        self.status("loading_data", f"loading {cfg.data}")
        data = load_data(cfg, self.notify)
        if ckpt is not None and list(ckpt["class_names"]) != data.class_names:
            raise CheckpointError(
                f"checkpoint {cfg.resume} was trained on {len(ckpt['class_names'])} classes "
                f"({', '.join(ckpt['class_names'][:4])}...) but the data has {len(data.class_names)} "
                f"({', '.join(data.class_names[:4])}...)"
            )
        self.status("building_model", f"building {cfg.arch}")
        model_cfg = cfg.with_overrides(weights="none") if ckpt is not None else cfg
        model = build_model(model_cfg, len(data.class_names), self.notify).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(cfg, model)
        train_src, test_src = self._sources(cfg, data, device)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, train_src.steps_per_epoch))
        stats = _EpochStats.zeros(device)
        ema = WeightEma(model, cfg.ema) if cfg.ema > 0 else None
        if ckpt is not None:
            self._restore(ckpt, model, optimizer, scheduler, stats, device)
            if ema is not None and ckpt.get("ema"):
                ema.load_state_dict(ckpt["ema"])

        if not self._enter_run():
            assert self._unstarted is not None
            return self._unstarted
        self.start_global_step = self.global_step
        uuids = [u for rank_uuids in world.gather(gpu_uuids(device)) for u in rank_uuids]
        if not world.is_main:
            return self._run_loop(
                cfg, model, optimizer, scheduler, train_src, test_src, data, device, ema, stats, started
            )
        self.run_sink = RunDirSink(
            run_dir, overwrite=cfg.overwrite, resuming_here=resuming_here, unique=not cfg.run_dir,
            on_error=lambda m: self._sink(ev.Log(m, level="error")),
        )  # fmt: skip
        self.run_sink.open(cfg)
        run_dir = self.run_sink.path
        self.run_dir = run_dir
        self.summary = SummaryKeeper(run_dir)
        self._open_control(run_dir)
        self.emit(
            ev.RunStarted(
                run_dir=str(run_dir),
                config=cfg.to_dict(),
                device=str(device),
                device_name=device_name(device),
                torch_version=torch.__version__,
                cuda_version=torch.version.cuda or "",
                num_threads=torch.get_num_threads(),
                train_size=len(data.train),
                test_size=len(data.test),
                class_names=data.class_names,
                steps_per_epoch=train_src.steps_per_epoch,
                loader=train_src.name,
                data_source=data.source,
                start_epoch=self.epoch,
                start_step=self.step,
                resumed_from=cfg.resume,
                params=sum(p.numel() for p in model.parameters()),
                gpu_uuids=uuids,
                world_size=world.size,
            )
        )
        return self._run_loop(cfg, model, optimizer, scheduler, train_src, test_src, data, device, ema, stats, started)

    def _run_loop(self, cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: torch.optim.lr_scheduler.LambdaLR, train_src: BatchSource, test_src: TensorBatches,
                  data: DataBundle, device: torch.device, ema: WeightEma | None, stats: _EpochStats,
                  started: float) -> ev.Finished:  # fmt: skip
        world = self.world
        step_model: nn.Module = model
        if cfg.compile and not self.compiles:
            self.emit(ev.Log(f"--compile is for CUDA; training uncompiled on {device.type}", level="warning"))
        if cfg.sync_bn and not world.is_distributed:
            self.emit(ev.Log("--sync-bn: one process already normalises over the whole batch"))
        if world.is_distributed:
            if cfg.sync_bn:  # the same parameters and buffers, in SyncBatchNorm layers
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            # Gradients averaged over the ranks in backward; rank 0's weights are broadcast first.
            ids = [device.index] if device.type == "cuda" else None
            step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        # Several ranks evaluate the plain model (no DDP collectives per batch); one process the step's.
        eval_model = model if world.is_distributed else step_model
        if self.compiles:
            # PyTorch's compiled-DDP path: compile the DDP-wrapped model (its graph is split at the
            # gradient buckets, so communication still overlaps backward); evaluation apart.
            step_model = compile_model(step_model)
            eval_model = compile_model(model) if world.is_distributed else step_model
        loop = _Loop(self, cfg, model, step_model, optimizer, scheduler, train_src, test_src, data, device, ema,
                     eval_model)  # fmt: skip
        loop.compiling = loop.eval_compiling = self.compiles
        reason, cause = "completed", ""
        try:
            loop.train(stats)
        except StopTraining:
            reason, cause = "stopped", self.controls.stop_cause
        if world.is_distributed:
            same = world.weights_agree(model)
            self.emit(ev.Log(f"{world.size} ranks hold identical weights" if same else
                             f"the {world.size} ranks' weights differ: a rank went its own way", level="info" if same else "error"))  # fmt: skip
        self.status("finished" if reason == "completed" else "stopped")
        finished = ev.Finished(
            reason=reason,
            epochs_done=self.epoch,
            global_step=self.global_step,
            test_accuracy=self.last_eval.accuracy if self.last_eval else None,
            best_accuracy=self.best_accuracy,
            seconds=time.perf_counter() - started,
            checkpoint=self.last_checkpoint,
            cause=cause,
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

    def _sources(self, cfg: TrainConfig, data: DataBundle, device: torch.device) -> tuple[BatchSource, TensorBatches]:
        compiled = self.compiles
        shard = self.world.shard if self.world.is_distributed else None
        # One shape per step for torch.compile: the ragged last batch is dropped (the fast recipes always do).
        drop_last = cfg.drop_last or compiled
        ranks = self.world.size
        if resolve_loader(cfg, device) == "dataloader":
            train: BatchSource = LoaderBatches(data.train, cfg.batch_size, device, cfg.seed, cfg.workers, drop_last,
                                               shard=shard, ranks=ranks)  # fmt: skip
        else:
            aug = Augmentation(pad_mode=cfg.pad_mode, flip=cfg.flip, cutout=cfg.cutout)
            train = TensorBatches(data.train, cfg.batch_size, device, cfg.seed, channels_last=cfg.channels_last,
                                  augmentation=aug, drop_last=drop_last, shard=shard, ranks=ranks)  # fmt: skip
        test = TensorBatches(data.test, cfg.eval_batch_size, device, cfg.seed, train=False,
                             channels_last=cfg.channels_last, pad_to_full=compiled, shard=shard, ranks=ranks)  # fmt: skip
        return train, test

    def _restore(self, ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LambdaLR, stats: _EpochStats, device: torch.device) -> None:  # fmt: skip
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {self.cfg.resume} does not fit this model: {str(exc).splitlines()[0][:160]}"
            ) from exc
        self.epoch, self.step, self.global_step = int(ckpt["epoch"]), int(ckpt["step"]), int(ckpt["global_step"])
        self.best_accuracy = ckpt.get("best_accuracy")
        # The saved partial epoch is every rank's together: rank 0 carries it on (the epoch's end sums the ranks).
        part = (ckpt.get("epoch_stats") or {}) if self.world.is_main else {}
        stats.loss_total = float(part.get("loss_sum", 0.0))
        stats.correct_total = int(part.get("correct", 0))
        stats.seen = int(part.get("seen", 0))
        stats.seconds = float(part.get("seconds", 0.0))
        set_rng_state(ckpt.get("rng") or {})
        self.emit(ev.Log(f"resumed from {self.cfg.resume} at epoch {self.epoch + 1}, step {self.step}"))


class _Loop:
    """The epoch/step loop of one run; split from Trainer to keep each piece small."""

    def __init__(self, trainer: Trainer, cfg: TrainConfig, model: nn.Module, step_model: nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                 train_src: BatchSource, test_src: TensorBatches, data: DataBundle, device: torch.device,
                 ema: WeightEma | None = None, eval_model: nn.Module | None = None) -> None:  # fmt: skip
        self.t = trainer
        self.ema = ema
        self.world = trainer.world
        # Rank 0 alone writes checkpoints (every rank resumes from them).
        self.store = CheckpointStore(trainer.run_dir / CHECKPOINTS, cfg.keep) if self.world.is_main else None
        self.cfg = cfg
        self.model = model
        self.step_model = step_model
        self.eval_model = eval_model if eval_model is not None else step_model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_src = train_src
        self.test_src = test_src
        self.data = data
        self.device = device
        self.num_classes = len(data.class_names)
        self.min_interval = 1.0 / cfg.progress_hz
        self.started = time.perf_counter()
        self.excluded = 0.0  # seconds paused or evaluating on request: not training time
        self.last_eval_seconds = 0.0
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
        self.t.emit(ev.Log(f"torch.compile: {what} compiled in {seconds:.1f} s"))
        self.t.status("evaluating" if what == "evaluation" else "training")
        return seconds

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- controls ----------------------------------------------------------------------------
    def _agree(self) -> tuple[Requests, bool]:
        """The pending requests and the pause state; with several ranks, rank 0's, on every rank
        (one small host-side broadcast per batch: all ranks act at the same step)."""
        controls = self.t.controls
        req, paused = controls.take(), controls.paused
        if not self.world.is_distributed:
            return req, paused
        save, evaluate, stop, save_on_stop, paused_i = self.world.agree(
            [req.save, req.evaluate, req.stop, req.save_on_stop, paused]
        )
        if stop and not controls.stop_requested:
            controls.stop(save=bool(save_on_stop), cause="stopped by rank 0")
        return Requests(bool(save), bool(evaluate), bool(stop), bool(save_on_stop)), bool(paused_i)

    def handle_controls(self, stats: _EpochStats) -> None:
        """Apply pending requests; block here while paused. Raises StopTraining."""
        controls = self.t.controls
        req, paused = self._agree()
        self._apply(stats, req)
        if not paused:
            return
        self.t.emit(ev.Paused(self.t.global_step))
        self.t.status("paused", f"paused at step {self.t.global_step}")
        paused_at = time.perf_counter()
        while paused:
            if self.world.is_main:
                controls.wait_while_paused(0.25)
            req, paused = self._agree()
            self._apply(stats, req)
        self.excluded += time.perf_counter() - paused_at  # paused time is not training time
        self.t.emit(ev.Resumed(self.t.global_step))
        self.t.status("training")

    def _apply(self, stats: _EpochStats, req: Requests | None = None) -> None:
        controls = self.t.controls
        req = req or controls.take()
        if req.evaluate and not req.stop:
            try:
                self.run_evaluation("request")
            except EvaluationInterrupted:
                req = controls.take()  # the stop that interrupted it
        if req.stop and req.save_on_stop and self.t.global_step == self.t.start_global_step:
            self.t.emit(ev.Log("stopped before any training step: no checkpoint written"))
        elif req.save or (req.stop and req.save_on_stop):
            self.save("stop" if req.stop else "request", stats)
        if req.stop:
            raise StopTraining

    # -- checkpoints and evaluation --------------------------------------------------------
    def save(self, reason: str, stats: _EpochStats, *, best: bool = False) -> None:
        t = self.t
        self.t.status("saving", "writing checkpoint")
        stats.fold()
        # The epoch so far, every rank's share (each rank saves at the same step; rank 0 writes).
        part_loss, part_correct, part_seen = self.world.host_sum([stats.loss_total, stats.correct_total, stats.seen])
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": t.epoch,
            "step": t.step,
            "global_step": t.global_step,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "class_names": list(self.data.class_names),
            "best_accuracy": t.best_accuracy,
            "epoch_stats": {"loss_sum": part_loss, "correct": int(part_correct),
                            "seen": int(part_seen), "seconds": stats.seconds},
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }  # fmt: skip
        if not all_finite(self.model):
            raise FloatingPointError(f"weights or BatchNorm statistics are no longer finite at step {t.global_step}; "
                                     "not saving them")  # fmt: skip
        if self.store is None:  # not rank 0
            return
        try:
            path = self.store.save(state, best=best)
        except OSError as exc:  # disk full, read-only folder...: report, keep training, older files intact
            t.emit(ev.Log(f"checkpoint NOT saved ({exc.strerror or exc}); training continues; "
                          f"last good checkpoint: {t.last_checkpoint or 'none yet'}", level="error"))  # fmt: skip
        else:
            t.last_checkpoint = str(path)
            t.emit(ev.CheckpointSaved(str(path), t.epoch, t.step, t.global_step, reason))
            if best:
                t.emit(ev.CheckpointSaved(str(path), t.epoch, t.step, t.global_step, "best"))
        self.t.status("paused" if t.controls.paused else "training")

    def run_evaluation(self, reason: str) -> EvalResult:
        t = self.t
        t.status("evaluating", f"evaluating on {len(self.data.test)} test images")
        began = time.perf_counter()
        model = self.ema.model if self.ema is not None else self.eval_model
        self.world.share_buffers_(model)  # several ranks: rank 0's BatchNorm statistics on each
        # A long evaluation on a CPU is visible: count, rate and ETA every few seconds.
        progress = CountProgress("evaluating:", "test images", len(self.data.test),
                                 lambda m: t.status("evaluating", m), t.status_every_s)  # fmt: skip
        compiled = 0.0
        if self.eval_compiling and model is self.eval_model:
            t.status("compiling", "torch.compile: compiling the evaluation graph")

        def on_batch(done: int) -> None:
            nonlocal compiled
            if self.eval_compiling and model is self.eval_model:
                compiled = self._compiled("evaluation", began)
            progress.update(done)

        # Ranks evaluate their shares and sum the counts; a stop waits for the end (all ranks agree).
        should_stop = (lambda: False) if self.world.is_distributed else (lambda: t.controls.stop_requested)
        result = evaluate(model, self.test_src, self.num_classes, autocast=self.autocast, tta=self.cfg.tta,
                          tta_translate=self.cfg.tta_translate, should_stop=should_stop, on_batch=on_batch,
                          reduce=self.world.all_reduce_ if self.world.is_distributed else None)  # fmt: skip
        seconds = time.perf_counter() - began - compiled
        if not math.isfinite(result.loss):
            raise FloatingPointError(f"test loss became {result.loss} after epoch {t.epoch + 1}, step {t.step}")
        self.last_eval_seconds = seconds
        if reason == "request":
            self.excluded += seconds
        t.last_eval = result
        t.emit(
            ev.Evaluation(
                epoch=t.epoch, step=t.step, global_step=t.global_step, loss=result.loss, accuracy=result.accuracy,
                per_class=result.per_class, confusion=result.confusion, class_names=list(self.data.class_names),
                seconds=seconds, reason=reason,
            )
        )  # fmt: skip
        t.status("paused" if t.controls.paused else "training")
        return result

    # -- the loop ------------------------------------------------------------------------------
    def train(self, stats: _EpochStats) -> None:
        t, cfg = self.t, self.cfg
        t.status("training", f"training for {cfg.epochs} epochs")
        self.model.train()
        while t.epoch < cfg.epochs:
            epoch_began = time.perf_counter() - stats.seconds
            excluded_before = self.excluded
            self.train_epoch(stats)
            train_seconds = time.perf_counter() - epoch_began - (self.excluded - excluded_before)
            try:
                result = self.run_evaluation("epoch")
            except EvaluationInterrupted:
                self._apply(stats)  # saves the epoch's training if asked, then stops
                raise StopTraining from None
            is_best = t.best_accuracy is None or result.accuracy > t.best_accuracy
            t.best_accuracy = max(result.accuracy, t.best_accuracy or 0.0)
            stats.fold()
            # Every rank's share of the epoch (a no-op in one process).
            loss_total, correct_total, seen_total = self.world.host_sum(
                [stats.loss_total, stats.correct_total, stats.seen]
            )
            seen = max(seen_total, 1)
            t.emit(
                ev.EpochEnd(
                    epoch=t.epoch + 1, epochs=cfg.epochs, train_loss=loss_total / seen,
                    train_accuracy=correct_total / seen, test_loss=result.loss, test_accuracy=result.accuracy,
                    images_per_sec=seen_total / max(train_seconds, 1e-9), seconds=train_seconds,
                    eval_seconds=self.last_eval_seconds,
                    lr=self.optimizer.param_groups[0]["lr"], compile_seconds=self.compile_seconds_in_epoch,
                )
            )  # fmt: skip
            self.compile_seconds_in_epoch = 0.0
            t.epoch, t.step = t.epoch + 1, 0
            stats = _EpochStats.zeros(self.device)
            self.save("epoch", stats, best=is_best)
            self.handle_controls(stats)

    def _timed_batches(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
        it = iter(self.train_src.batches(self.t.epoch, start_step))
        while True:
            began = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            yield x, y, time.perf_counter() - began

    def train_epoch(self, stats: _EpochStats) -> None:
        t, cfg = self.t, self.cfg
        steps = self.train_src.steps_per_epoch
        epoch_began = time.perf_counter() - stats.seconds
        last_emit = time.perf_counter()
        emitted_images, wait = 0, 0.0
        interval_loss = torch.zeros((), device=self.device)
        interval_n = 0
        self.handle_controls(stats)
        if self.compiling:
            t.status("compiling", "torch.compile: compiling the training step (tens of seconds)")
        for x, y, waited in self._timed_batches(t.step):
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
            t.step += 1
            t.global_step += 1
            emitted_images += batch
            wait += waited
            now = time.perf_counter()
            boundary = t.step % cfg.log_every == 0
            report = boundary or t.step == steps or now - last_emit >= self.min_interval
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
                raise FloatingPointError(f"loss {what} at epoch {t.epoch + 1}, step {t.step}")
            if report:
                span = max(now - last_emit, 1e-9)
                t.emit(
                    ev.Progress(
                        epoch=t.epoch, epochs=cfg.epochs, step=t.step, steps_per_epoch=steps,
                        global_step=t.global_step, loss=loss_value, lr=self.optimizer.param_groups[0]["lr"],
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
            if t.step < steps:
                self.handle_controls(stats)
