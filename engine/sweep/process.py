"""A sweep's runs as processes: each in a session of its own (a Ctrl-C at the sweep's terminal is
the sweep's to pass on), its output in a log file, and told to save and stop (SIGTERM from the
kernel) when the sweep that started it dies, SIGKILL included, so that no run trains on alone."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls into it


def _die_with_parent() -> None:
    """In the run's process before it starts: SIGTERM when the sweep's thread that started it ends."""
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_run(command: list[str], log_path: Path, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)  # fmt: skip
