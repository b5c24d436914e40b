"""What may run as N processes (``--nproc``), planned before any starts: the count, the checks
that refuse a config for N ranks, the torchrun command line and the one run directory every rank
names. Free of torch, so the dashboard's process and the CLI can use it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from engine.run.config import TrainConfig
from engine.run.rundir import CHECKPOINTS, LAST, checkpoint_run_dir, default_run_dir


def launched() -> bool:
    """Whether this process is one rank of several (torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def distributed_problem(cfg: TrainConfig, nproc: int) -> str:
    """Why ``cfg`` cannot train as ``nproc`` processes ("" when it can): the launcher says it before
    any starts, the trainer again when torchrun was run by hand."""
    if cfg.batch_size < 2 * nproc:
        return (f"--batch-size {cfg.batch_size} is too small for --nproc {nproc}: each process needs "
                "at least 2 images of every batch (BatchNorm)")  # fmt: skip
    if cfg.lr_find and nproc > 1:
        return ("--lr-find runs in one process: find the LR first (cifar-tui lr-find ...), then train with "
                f"--nproc {nproc} --lr <the suggestion>")  # fmt: skip
    if cfg.sync_bn and nproc > 1 and not cfg.device.startswith(("auto", "cuda")):
        return f"--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm does not run on {cfg.device})"
    return ""


def launch_values(nproc: str, max_restarts: int) -> int:
    """``--nproc`` as a count, with ``--max-restarts`` checked; ValueError says what is wrong."""
    if not 0 <= max_restarts <= 100:
        raise ValueError(f"--max-restarts must be between 0 and 100, got {max_restarts}")
    return nproc_value(nproc)


def nproc_value(text: str) -> int:
    """``--nproc``: a count, or ``auto`` (one per visible GPU, at least one)."""
    if text == "auto":
        return max(1, visible_gpus())
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--nproc must be a number or auto, got {text!r}") from None
    if not 1 <= n <= 1024:
        raise ValueError(f"--nproc must be between 1 and 1024, got {n}")
    return n


def torchrun_command(nproc: int, max_restarts: int = 0) -> list[str]:
    """The torchrun launch of ``python -m engine`` on this machine: ``nproc`` ranks, c10d rendezvous
    on a free local port (--standalone); a rank that fails ends the group, which torchrun starts
    again up to ``max_restarts`` times (engine/ranks/torchrun.py is torchrun itself, reporting a
    failure in one line). Each rank reads the launcher's resolved config (:func:`rank_config`)."""
    return [sys.executable, "-m", "engine.ranks.torchrun", "--standalone", f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}", "-m", "engine"]  # fmt: skip


def visible_gpus() -> int:
    """GPUs this process may use, without importing torch (the dashboard never does):
    ``CUDA_VISIBLE_DEVICES`` when set, else NVML's count; 0 where neither knows of one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")])
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: no GPU to count
        return 0


def launch_run_dir(cfg: TrainConfig) -> str:
    """The one run directory every rank names: --run-dir, the resumed checkpoint's own run, or a
    new default name fixed here (ranks starting a second apart would each make up another)."""
    if cfg.run_dir:
        return cfg.run_dir
    own = checkpoint_run_dir(Path(cfg.resume)) if cfg.resume else None
    return str(own or default_run_dir(cfg))


RANK_CONFIG = "CIFAR_TUI_RANK_CONFIG"
"""The environment variable that carries the launcher's resolved config (JSON) to every rank."""


def rank_environment(cfg: TrainConfig) -> dict[str, str]:
    """This process's environment plus ``cfg``, resolved and checked once by the launcher, with
    the one run directory every rank writes already fixed in it (:func:`launch_run_dir`)."""
    assert cfg.run_dir, "fix the run directory first (launch_run_dir): every rank must name the same one"
    return {**os.environ, RANK_CONFIG: json.dumps(cfg.to_dict())}


def rank_config() -> TrainConfig | None:
    """The config a launcher gave this rank (None when torchrun was run by hand with options).
    A rank that torchrun restarted (--max-restarts) goes on from its run's last checkpoint, or
    starts the run over when none was written yet."""
    given = os.environ.get(RANK_CONFIG)
    if not launched() or not given:
        return None
    cfg = TrainConfig.from_dict(json.loads(given))
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return cfg
    last = Path(cfg.run_dir) / CHECKPOINTS / LAST
    return cfg.with_overrides(resume=str(last)) if last.is_file() else cfg.with_overrides(overwrite=True)
