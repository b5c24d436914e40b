"""A sweep's runs as processes: each in a session of its own (a Ctrl-C at the sweep's terminal is
the sweep's to pass on), its output in a log file, and told to save and stop (SIGTERM from the
kernel) when the sweep that started it dies, SIGKILL included, so that no run trains on alone;
what a run's folder says of it (its epochs, why it stopped, why it failed), and asking it to stop."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.options import peek_option
from engine.ranks.plan import visible_gpus
from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient
from engine.run.rundir import EVENTS, read_events
from engine.sweep.forkserver import ForkedRun, fork_server

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls into it


def _die_with_parent() -> None:
    """In the run's process before it starts: SIGTERM when the sweep's thread that started it ends."""
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def gpu_ids() -> list[str]:
    """The GPUs runs may be given, one each: CUDA_VISIBLE_DEVICES's entries when set, else
    every card NVML counts (none on a CPU machine). Torch-free."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and not d.strip().startswith("-")]
    return [str(i) for i in range(visible_gpus())]


class Slots:
    """``parallel`` places for runs at a time; where there are GPUs (and the runs do not say
    ``--device cpu``) each place is a card of its own, so runs share the box's GPUs one each."""

    def __init__(self, parallel: int, base: list[str]) -> None:
        self.gpus = gpu_ids() if peek_option(base, "--device", "auto") != "cpu" else []
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(parallel):
            self._free.put(slot)

    @contextlib.contextmanager
    def taken(self) -> Iterator[int]:
        """A free place, held until the block ends (waiting for one if all are taken)."""
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def env(self, slot: int) -> dict[str, str] | None:
        """The run's environment in ``slot``: only its own card visible (CUDA_VISIBLE_DEVICES);
        None (the environment as it is) without GPUs."""
        return {**os.environ, "CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)]} if self.gpus else None


RunProcess = subprocess.Popen[bytes] | ForkedRun
"""A run the sweep started: pid, poll, wait, send_signal."""


def start_run(args: list[str], log_path: Path, env: dict[str, str] | None) -> RunProcess:
    """``python -m engine args`` with its output in ``log_path``: forked from the sweep's fork
    server (the trainer imported once), else a process of its own."""
    server = fork_server()
    if server is not None:
        with contextlib.suppress(OSError):  # (it ended: this run and the next start on their own)
            return server.start("engine", args, log_path, env if env is not None else dict(os.environ))
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "engine", *args], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent)  # fmt: skip


def epoch_ends(run_dir: Path) -> list[ev.EpochEnd]:
    try:
        return [e for e in read_events(run_dir) if isinstance(e, ev.EpochEnd)] if (run_dir / EVENTS).is_file() else []
    except (OSError, ValueError):
        return []


def stop_cause(run_dir: Path) -> str:
    """Why the trial's run stopped early, as its last event says ('' if it did not stop)."""
    try:
        ends = [e for e in read_events(run_dir) if isinstance(e, ev.Finished)]
    except (OSError, ValueError):
        return ""
    return ends[-1].cause if ends and ends[-1].reason != "completed" else ""


def stop_run(run_dir: Path, cause: str) -> bool:
    """Ask a trial's run to save and stop, saying why; whether it took the request."""
    try:
        client = ControlClient(Path(json.loads((run_dir / TRAINER_FILE).read_text())["socket"]), timeout=30)
        try:
            return bool(client.send("stop_save", cause).get("ok"))
        finally:
            client.close()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def failure(log_path: Path, code: int) -> str:
    """Why a trial's run failed, in one line: a signal that killed it, or its last error line."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line for line in lines if "error" in line.lower() or "fail" in line.lower()]
    return (errors or lines or [f"exit {code}"])[-1].strip()[:200]
