"""Setting a run up: the config a resume trains, the batch sources, the models each step and
evaluation use (one process or several, compiled or not), the event that says it started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.data.pipeline import Augmentation, BatchSource, LoaderBatches, TensorBatches
from engine.data.sources import DataBundle
from engine.ranks.group import World
from engine.run import events as ev
from engine.run.config import TrainConfig, validate
from engine.run.errors import CheckpointError, ConfigError
from engine.run.field_kinds import RESUME_MAY_CHANGE
from engine.run.rundir import checkpoint_run_dir
from engine.train.device import compile_model, device_name, resolve_loader
from engine.train.state import TrainState


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


def check_resumable(ckpt: dict[str, Any], cfg: TrainConfig) -> None:
    """A checkpoint that has trained every epoch asked for trains no further."""
    if int(ckpt["epoch"]) >= cfg.epochs:
        raise ConfigError(f"checkpoint {cfg.resume} already trained {ckpt['epoch']} epochs; pass --epochs N "
                          f"with N > {ckpt['epoch']} to train further")  # fmt: skip


def check_classes(ckpt: dict[str, Any], cfg: TrainConfig, class_names: list[str]) -> None:
    """A checkpoint trains on the classes it was trained on."""
    if list(ckpt["class_names"]) != class_names:
        raise CheckpointError(
            f"checkpoint {cfg.resume} was trained on {len(ckpt['class_names'])} classes "
            f"({', '.join(ckpt['class_names'][:4])}...) but the data has {len(class_names)} "
            f"({', '.join(class_names[:4])}...)"
        )


def batch_sources(cfg: TrainConfig, data: DataBundle, device: torch.device, world: World,
                  compiled: bool) -> tuple[BatchSource, TensorBatches]:  # fmt: skip
    """The training and test batches of this process (its shard, with several)."""
    shard = world.shard if world.is_distributed else None
    # One shape per step for torch.compile: the ragged last batch is dropped (the fast recipes always do).
    drop_last = cfg.drop_last or compiled
    ranks = world.size
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


def step_and_eval_models(cfg: TrainConfig, model: nn.Module, device: torch.device, world: World,
                         compiled: bool) -> tuple[nn.Module, nn.Module, nn.Module]:  # fmt: skip
    """The model, the one each training step runs and the one evaluation runs."""
    step_model: nn.Module = model
    if world.is_distributed:
        if cfg.sync_bn:  # the same parameters and buffers, in SyncBatchNorm layers
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # Gradients averaged over the ranks in backward; rank 0's weights are broadcast first.
        ids = [device.index] if device.type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    # Several ranks evaluate the plain model (no DDP collectives per batch); one process the step's.
    eval_model = model if world.is_distributed else step_model
    if compiled:
        # PyTorch's compiled-DDP path: compile the DDP-wrapped model (its graph is split at the
        # gradient buckets, so communication still overlaps backward); evaluation apart.
        step_model = compile_model(step_model)
        eval_model = compile_model(model) if world.is_distributed else step_model
    return model, step_model, eval_model


def run_started(run_dir: Path, cfg: TrainConfig, device: torch.device, data: DataBundle, train_src: BatchSource,
                state: TrainState, model: nn.Module, uuids: list[str], world_size: int,
                pids: list[int]) -> ev.RunStarted:  # fmt: skip
    """The event that says the run has started: its directory, config, device, data and model."""
    return ev.RunStarted(
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
        start_epoch=state.epoch,
        start_step=state.step,
        resumed_from=cfg.resume,
        params=sum(p.numel() for p in model.parameters()),
        gpu_uuids=uuids,
        world_size=world_size,
        pids=pids,
        lr_scale=state.steer.lr_scale,
    )
