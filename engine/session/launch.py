"""Starting data-parallel training (``--nproc``): the checks made before any rank starts,
the torchrun process, passing stop signals on, and the exit code of a launch.

Free of torch, so the dashboard's process can use it: :func:`preflight` checks a GPU or real
data in a child process before the ranks start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from engine.ranks.plan import launch_run_dir, rank_environment, torchrun_command
from engine.run import events as ev
from engine.run import stop_signals
from engine.run.config import TrainConfig
from engine.run.errors import EXIT_CRASH, exit_code
from engine.run.rundir import EVENTS, read_events
from engine.session.attached import EventTail


def preflight(cfg: TrainConfig) -> None:
    """What one process refuses once it has started, checked before N ranks start (nothing on
    disk yet, no torchrun): the device, and the data (an image folder is decoded here into the
    decoded-image cache, which the ranks then read; CIFAR-10 is downloaded here). In a child
    process (engine/session/preflight.py), so that the caller, the dashboard's process among
    them, never imports torch; ValueError with the child's one line when it refuses."""
    if cfg.device == "cpu" and cfg.data == "demo" and not cfg.resume:
        return  # a CPU is always there and generated data cannot fail: nothing to check
    child = subprocess.run([sys.executable, "-m", "engine.session.preflight"], input=json.dumps(cfg.to_dict()),
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    if child.returncode != 0:
        lines = child.stdout.strip().splitlines()
        raise ValueError(lines[-1] if lines else f"the checks before the launch failed (exit {child.returncode})")


def start_torchrun(
    nproc: int, cfg: TrainConfig, max_restarts: int, **popen: Any
) -> tuple[Path, subprocess.Popen[bytes]]:
    """Start ``nproc`` ranks under torchrun, in a session of their own, each reading ``cfg`` (the
    caller resolved and checked it: check_target, distributed_problem, preflight); the one run
    directory they write, and the torchrun process."""
    cfg = cfg.with_overrides(run_dir=launch_run_dir(cfg))  # once: a new default name has a timestamp
    launcher = subprocess.Popen(torchrun_command(nproc, max_restarts), env=rank_environment(cfg),
                                start_new_session=True, **popen)  # fmt: skip
    return Path(cfg.run_dir), launcher


def run_distributed(nproc: int, cfg: TrainConfig, max_restarts: int = 0) -> int:
    """``--nproc N``: the same run as N ranks under torchrun, which ends them all if one fails.

    torchrun runs in a session of its own and a stop signal to this process (or to its whole
    group) is passed to the ranks, which save and stop as one process does; torchrun itself,
    signalled, would end them with a traceback of its own and leave before they have saved."""
    print(f"[launching] {nproc} processes (torchrun)", flush=True)
    run_dir, launcher = start_torchrun(nproc, cfg, max_restarts)
    signals: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        _signal_ranks(launcher.pid, signum)

    with stop_signals.handled(on_signal):
        code = launcher.wait()
    return launch_exit_code(run_dir, code, signals[0] if signals else 0)


def start_ranks(nproc: int, cfg: TrainConfig, max_restarts: int) -> tuple[Path, Path] | int:
    """Start the ranks in the background (their output in RUN_DIR.torchrun.log beside the run);
    (run directory, log) once rank 0 has started the run, else the launch's exit code."""
    cfg = cfg.with_overrides(run_dir=launch_run_dir(cfg))  # fixed here: the log and the tail name it too
    run_dir = Path(cfg.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.with_name(run_dir.name + ".torchrun.log")
    events = run_dir / EVENTS
    before = events.stat().st_size if events.is_file() else 0  # a resumed run's earlier events
    print(f"[launching] {nproc} processes (torchrun); their output: {log_path}", flush=True)
    with open(log_path, "ab") as log:
        _, proc = start_torchrun(nproc, cfg, max_restarts, stdout=log, stderr=subprocess.STDOUT)
    with EventTail(run_dir, offset=before) as tail:
        while not any(isinstance(e, ev.RunStarted) for e in tail.read()):
            if proc.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                print("\n".join(lines), file=sys.stderr)
                return launch_exit_code(run_dir, proc.returncode)
            time.sleep(0.2)
    return run_dir, log_path


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


def last_end(run_dir: Path) -> ev.Finished | ev.Failed | None:
    """The run's end as its last event says (completed, stopped, failed how); None while it has
    not ended (or never started)."""
    try:
        last = read_events(run_dir)[-1] if (run_dir / EVENTS).is_file() else None
    except (OSError, IndexError):
        last = None
    return last if isinstance(last, ev.Finished | ev.Failed) else None


def launch_exit_code(run_dir: Path, launcher_code: int, signal: int = 0) -> int:
    """The exit code of a torchrun launch, from how the run ended (ranks exit 0 on a stop, so
    torchrun reports no failure for it); a run that never started keeps torchrun's code."""
    end = last_end(run_dir)
    if end is None and not signal:
        return launcher_code or EXIT_CRASH
    return exit_code(end, signal=signal)
