"""Starting data-parallel training (``--nproc``): what may run as N processes, the checks made
before any starts, the torchrun command, passing stop signals on, and the exit code of a launch.

Free of torch at import, so the dashboard's process can use it. Only :func:`preflight` imports
torch, to check a GPU or real data before the ranks start (with a CPU and the demo data it does
not: nothing there can fail)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from engine import events as ev
from engine import stop_signals
from engine.config import TrainConfig
from engine.errors import EXIT_CRASH, EXIT_STOPPED, end_code
from engine.rundir import CHECKPOINTS, EVENTS, checkpoint_run_dir, default_run_dir, read_events


def launched() -> bool:
    """Whether this process is one rank of several (torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def distributed_problem(cfg: TrainConfig, nproc: int) -> str:
    """Why ``cfg`` cannot train as ``nproc`` processes ("" when it can): the launcher says it before
    any starts, the trainer again when torchrun was run by hand."""
    if cfg.batch_size < 2 * nproc:
        return (f"--batch-size {cfg.batch_size} is too small for --nproc {nproc}: each process needs "
                "at least 2 images of every batch (BatchNorm)")  # fmt: skip
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


def torchrun_command(nproc: int, engine_argv: Sequence[str], max_restarts: int = 0) -> list[str]:
    """The torchrun launch of ``python -m engine`` on this machine: ``nproc`` ranks, c10d rendezvous
    on a free local port (--standalone); a rank that fails ends the group, which torchrun starts
    again up to ``max_restarts`` times (engine/torchrun.py is torchrun itself, reporting a
    failure in one line)."""
    return [sys.executable, "-m", "engine.torchrun", "--standalone", f"--nproc-per-node={nproc}",
            f"--max-restarts={max_restarts}", "-m", "engine", *engine_argv]  # fmt: skip


def without_options(argv: Sequence[str], names: Sequence[str], flags: Sequence[str] = ()) -> list[str]:
    """``argv`` without ``--name VALUE`` / ``--name=VALUE`` for each name, and without bare ``flags``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
        elif arg in flags or any(arg.startswith(f"{n}=") for n in names):
            continue
        else:
            out.append(arg)
    return out


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


def preflight(cfg: TrainConfig) -> None:
    """What one process refuses once it has started, checked before N ranks start (nothing on
    disk yet, no torchrun): the device, and the data (an image folder is decoded here into the
    decoded-image cache, which the ranks then read; CIFAR-10 is downloaded here)."""
    from engine.checkpoint import load_checkpoint
    from engine.data import load_data
    from engine.trainer import merge_resume_config, resolve_device

    if cfg.resume:  # the data and model are the checkpoint's
        cfg = merge_resume_config(cfg, load_checkpoint(Path(cfg.resume))["config"])
    if cfg.device != "cpu":  # (a CPU is always there)
        resolve_device(cfg.device)

    def notify(kind: str, message: str) -> None:
        if kind in ("loading_data", "downloading", "warning"):
            print(f"[{kind}] {message}", file=sys.stderr, flush=True)

    if cfg.data != "demo":  # (generated: it cannot fail)
        load_data(cfg, notify)


def engine_options(argv: Sequence[str]) -> list[str]:
    """A ``cifar-tui`` command line as each rank's ``python -m engine`` takes it: without the
    launch and dashboard options (the launcher fixes --run-dir)."""
    return without_options(argv, ["--nproc", "--max-restarts", "--run-dir", "--refresh", "--on-hangup", "--notify"],
                           ["--headless", "--detach"])  # fmt: skip


def launch_run_dir(cfg: TrainConfig) -> str:
    """The one run directory every rank names: --run-dir, the resumed checkpoint's own run, or a
    new default name fixed here (ranks starting a second apart would each make up another)."""
    if cfg.run_dir:
        return cfg.run_dir
    own = checkpoint_run_dir(Path(cfg.resume)) if cfg.resume else None
    return str(own or default_run_dir(cfg))


def distributed_launch(nproc: int, argv: Sequence[str], cfg: TrainConfig, max_restarts: int) -> tuple[Path, list[str]]:
    """The run directory every rank names (fixed here) and the torchrun command that starts them.
    The caller has checked ``cfg`` (check_target, distributed_problem): nothing has started yet."""
    run_dir = launch_run_dir(cfg)
    return Path(run_dir), torchrun_command(nproc, [*engine_options(argv), "--run-dir", run_dir], max_restarts)


def run_distributed(nproc: int, argv: Sequence[str], cfg: TrainConfig, max_restarts: int = 0) -> int:
    """``--nproc N``: the same command as N ranks under torchrun, which ends them all if one fails.

    torchrun runs in a session of its own and a stop signal to this process (or to its whole
    group) is passed to the ranks, which save and stop as one process does; torchrun itself,
    signalled, would end them with a traceback of its own and leave before they have saved."""
    run_dir, command = distributed_launch(nproc, argv, cfg, max_restarts)
    print(f"[launching] {nproc} processes (torchrun)", flush=True)
    launcher = subprocess.Popen(command, start_new_session=True)
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        _signal_ranks(launcher.pid, signum)

    with stop_signals.handled(on_signal):
        code = launcher.wait()
    end = exit_code_of_run(run_dir, code)
    return 128 + signals[0] if signals and end == EXIT_STOPPED else end


def _signal_ranks(launcher: int, signum: int) -> None:
    """Pass a stop signal to the ranks torchrun runs (its children)."""
    import psutil

    try:
        ranks = psutil.Process(launcher).children()
    except psutil.Error:
        return
    for rank in ranks:
        try:
            rank.send_signal(signum)
        except psutil.Error:
            continue


def exit_code_of_run(run_dir: Path, launcher_code: int) -> int:
    """The exit code of a torchrun launch, from how the run ended (its last event): ranks exit 0
    on a stop, so torchrun reports no failure for it; a run that never started keeps torchrun's."""
    end = end_code_of_run(run_dir)
    return end if end is not None else launcher_code or EXIT_CRASH


def end_code_of_run(run_dir: Path) -> int | None:
    """The exit code that the run's last event says (completed, stopped, failed how); None while
    it has not ended (or never started)."""
    try:
        last = read_events(run_dir)[-1] if (run_dir / EVENTS).is_file() else None
    except (OSError, IndexError):
        last = None
    return end_code(last) if isinstance(last, ev.Finished | ev.Failed) else None


def restarted_argv(argv: list[str]) -> list[str]:
    """A rank that torchrun restarted (--max-restarts) goes on from its run's last checkpoint, or
    starts the run over when none was written yet; a first start keeps ``argv`` as it is."""
    if not launched() or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return argv
    run_dir = next((v for k, v in itertools.pairwise(argv) if k == "--run-dir"), None)
    if run_dir is None:  # the launcher always names it
        return argv
    last = Path(run_dir) / CHECKPOINTS / "last.pt"
    return [*argv, "--resume", str(last)] if last.is_file() else [*argv, "--overwrite"]
