"""Keys across ranks: how long a pause takes to act with 1 and with N processes, and the
global images/s, on the demo set on this machine's CPU (gloo) or GPUs (--device cuda).

A pause goes through the run's control socket (what `p` and `cifar-tui attach` send) and counts
as acted on when rank 0 writes its `paused` event, which it does once every rank agreed at a
batch boundary. Prints a markdown table for docs/benchmarks.md.

    python bench/distributed_controls.py [--nproc 2] [--presses 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient
from engine.run.rundir import read_events


def events_of(run: Path) -> list[ev.Event]:
    return read_events(run) if (run / "events.jsonl").is_file() else []


def wait_until(what: str, cond: object, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"no {what}: training ended or took over {timeout} s")
        time.sleep(0.002)


def count(run: Path, kind: type) -> int:
    return sum(isinstance(e, kind) for e in events_of(run))


def measure(nproc: int, presses: int, device: str, workdir: Path) -> tuple[list[float], float]:
    """Pause latencies (seconds) and the median global images/s of the progress reports."""
    run = workdir / f"nproc{nproc}"
    command = [sys.executable, "-m", "engine", "--nproc", str(nproc), "--device", device, "--data", "demo",
               "--weights", "none", "--batch-size", "64", "--epochs", "500", "--run-dir", str(run),
               "--loader", "tensor", "--progress-hz", "4"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delays: list[float] = []
    try:
        wait_until("training", lambda: (run / TRAINER_FILE).is_file() and count(run, ev.Progress) >= 3, proc)
        client = ControlClient(Path(json.loads((run / TRAINER_FILE).read_text())["socket"]), timeout=30)
        for _ in range(presses):
            paused = count(run, ev.Paused)
            sent = time.perf_counter()
            client.send("pause")
            wait_until("pause", lambda p=paused: count(run, ev.Paused) > p, proc)  # type: ignore[misc]
            delays.append(time.perf_counter() - sent)
            resumed = count(run, ev.Resumed)
            client.send("resume")
            wait_until("resume", lambda r=resumed: count(run, ev.Resumed) > r, proc)  # type: ignore[misc]
            progress = count(run, ev.Progress)
            wait_until("progress", lambda p=progress: count(run, ev.Progress) >= p + 2, proc)  # type: ignore[misc]
        client.send("stop")
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    rates = [e.images_per_sec for e in events_of(run) if isinstance(e, ev.Progress)][2:]
    return delays, statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--presses", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"machine: {machine()}; demo set, ResNet-18 (ImageNet stem), batch 64, {args.device}")
    print("| processes | pause to paused, median / max | global images/s (median report) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="cifar-tui-bench-") as tmp:
        for nproc in (1, args.nproc):
            delays, rate = measure(nproc, args.presses, args.device, Path(tmp))
            print(f"| {nproc} | {1000 * statistics.median(delays):.0f} ms / {1000 * max(delays):.0f} ms "
                  f"({len(delays)} presses) | {rate:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
