"""A sweep's runs forked from one process that has imported the trainer once, instead of each
starting a fresh ``python -m engine`` that imports torch, torchvision and the trainer again
(about 3 CPU-seconds a run on a 2-core machine; bench/sweep_overhead.py).

The server (``python -m engine.sweep.forkserver``, in a session of its own) imports them, never
touches CUDA, and stays single-threaded: a forked run starts as clean as a fresh interpreter as
far as CUDA goes (it is first initialised in the run, after its CUDA_VISIBLE_DEVICES is set).
The sweep sends one JSON line per run (module, arguments, environment, folder, log) on the
server's stdin; the server forks, and the child becomes the run as ``subprocess.Popen`` with
``start_new_session`` would have made it: its own session, its output in the log, told to save
and stop (SIGTERM) when the server ends. The server reports each child's pid and, once it has
reaped it, its exit code (negative for a signal). When the sweep dies (SIGKILL included) its end
of the pipe closes, the server ends, and the runs get their SIGTERM.

``CIFAR_TUI_TRIAL_START=exec`` starts every run as its own process instead, as does any failure
to start or keep the server (said once in the sweep's output)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import runpy
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

START_ENV = "CIFAR_TUI_TRIAL_START"
"""Set to ``exec`` to start each run as a process of its own (no fork server)."""


class ForkedRun:
    """A run the server forked: the part of ``subprocess.Popen`` the sweep uses (pid, poll, wait,
    send_signal). Signals go through a pidfd, so a pid reused after the run ended is never hit."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()
        self._pidfd_lock = threading.Lock()  # (closed by the reader as a signal may be sent)
        self._pidfd: int | None = None
        with contextlib.suppress(OSError):  # (already gone: its code is on its way)
            self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"run {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with self._pidfd_lock, contextlib.suppress(ProcessLookupError):
            if self.returncode is None and self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)

    def await_exit(self) -> None:
        """Block until the process has exited (its pidfd turns readable), whoever reaps it."""
        if self._pidfd is not None:
            with selectors.DefaultSelector() as sel:
                sel.register(self._pidfd, selectors.EVENT_READ)
                sel.select()

    def ended(self, code: int) -> None:
        with self._pidfd_lock:
            self.returncode = code
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._ended.set()


class ForkServer:
    """The sweep's side: starts the server, asks it for runs, and hears their exit codes."""

    READY_TIMEOUT_S = 300.0
    """How long the server may take to import the trainer (seconds; a loaded machine is slow)."""

    def __init__(self) -> None:
        # numpy's OpenBLAS would start a thread pool of its own at import, and the server must be
        # single-threaded; nothing a run trains with uses numpy's BLAS.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        self._proc = subprocess.Popen([sys.executable, "-m", "engine.sweep.forkserver"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True)  # fmt: skip
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._requests: IO[bytes] = self._proc.stdin
        self._runs: dict[int, ForkedRun] = {}
        self._started: queue.Queue[ForkedRun | None] = queue.Queue()
        self._lock = threading.Lock()
        self.alive = True
        ready: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._hear, args=(self._proc.stdout, ready), name="forkserver", daemon=True).start()
        try:
            hello = ready.get(timeout=self.READY_TIMEOUT_S)
        except queue.Empty:
            hello = {"why": "it did not start in time"}
        if not hello.get("ready"):
            self.alive = False
            self._proc.kill()
            raise OSError(f"the sweep's fork server is not used ({hello.get('why', 'it ended')})")

    def start(self, module: str, args: list[str], log_path: Path, env: dict[str, str]) -> ForkedRun:
        """``python -m module args`` as a forked child with this environment and log."""
        request = {"module": module, "args": args, "log": str(log_path), "env": env, "cwd": os.getcwd()}
        with self._lock:
            if not self.alive:
                raise OSError("the sweep's fork server has ended")
            self._requests.write(json.dumps(request).encode() + b"\n")
            self._requests.flush()
            run = self._started.get()
        if run is None:
            raise OSError("the sweep's fork server ended before the run started")
        return run

    def close(self) -> None:
        """End the server (its runs, if any, are told to stop, as when the sweep dies)."""
        with self._lock:
            self.alive = False
            with contextlib.suppress(OSError):
                self._requests.close()
        self._proc.wait()

    def _hear(self, reports: IO[bytes], ready: queue.Queue[dict[str, Any]]) -> None:
        for line in reports:
            report = json.loads(line)
            if "ready" in report:
                ready.put(report)
            elif "code" in report:
                run = self._runs.pop(report["pid"], None)
                if run is not None:
                    run.ended(int(report["code"]))
            else:
                run = self._runs[report["pid"]] = ForkedRun(report["pid"])
                self._started.put(run)
        self.alive = False
        ready.put({"why": "it ended"})
        self._started.put(None)
        # Runs it leaves are told to stop (their parent is gone); their codes are lost: each
        # ends as failed (1) when its process does.
        for run in list(self._runs.values()):
            run.await_exit()
            run.ended(1)


_server: ForkServer | None = None
_refused = False
_server_lock = threading.Lock()


def fork_server() -> ForkServer | None:
    """This process's fork server, started on first use; None where runs start as processes
    of their own (CIFAR_TUI_TRIAL_START=exec, or the server could not start: said once)."""
    global _server, _refused
    if os.environ.get(START_ENV) == "exec":
        return None
    with _server_lock:
        if _server is None and not _refused:
            try:
                _server = ForkServer()
            except OSError as exc:
                _refused = True
                print(f"sweep: {exc}; each run starts as a process of its own", flush=True)
        return _server if _server is not None and _server.alive else None


# The server's side.

_LIBC = ctypes.CDLL(None, use_errno=True)


def _say(report: dict[str, Any]) -> None:
    os.write(1, json.dumps(report).encode() + b"\n")  # (one short line: a single write)


def _serve() -> dict[str, Any] | None:
    """Fork a child per request until stdin closes (None); in a child, its request."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # (a handler, so that the wakeup fd is written)
    signal.set_wakeup_fd(wake_w)
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(0, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    continue
                data = os.read(0, 1 << 16)
                if not data:
                    return None
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    request = json.loads(line)
                    # Opened here, so that it is there when the sweep hears the pid (as with Popen).
                    request["log_fd"] = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    pid = os.fork()
                    if pid == 0:  # (returning closes the selector)
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        os.close(wake_r)
                        os.close(wake_w)
                        return dict(request)
                    os.close(request["log_fd"])
                    _say({"pid": pid})
            _reap()


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _become(request: dict[str, Any], server: int) -> None:
    """In the child: the process ``subprocess.Popen(start_new_session=True)`` would have made."""
    os.setsid()
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: told to stop when the server ends
    if os.getppid() != server:  # (it ended before the line above)
        os._exit(143)
    null, log = os.open(os.devnull, os.O_RDONLY), request["log_fd"]
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["module"], *request["args"]]


def main() -> int:
    from engine.run.heavy_imports import heavy_imports

    with heavy_imports():
        import torch

        import engine.cli  # (what ``python -m engine`` imports)
        import engine.train.trainer  # noqa: F401

    threads = len(os.listdir("/proc/self/task"))
    # The CUDA driver loaded (libcuda) means something asked a GPU a question: a forked child's
    # CUDA would then be broken, so the runs start as processes of their own instead.
    driver = "libcuda.so" in Path("/proc/self/maps").read_text()
    if torch.cuda.is_initialized() or driver or threads != 1:
        why = "the CUDA driver is loaded" if driver or torch.cuda.is_initialized() else f"{threads} threads"
        _say({"ready": False, "why": f"it is not a safe place to fork from: {why}"})
        return 1
    _say({"ready": True})
    server = os.getpid()
    request = _serve()
    if request is None:
        return 0
    _become(request, server)
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
