"""What the dashboard costs training: images/s with the app (run_test, 120x40) vs --headless,
the UI process's CPU share meanwhile, and how long after `p` training actually pauses.

Same config both ways (demo data, ResNet-18, tensor loader, 4 epochs; the first epoch is
warm-up and left out), alternating headless/app runs.

    python bench/dashboard_overhead.py [--rounds 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.common import machine  # noqa: E402
from engine.run import events as ev  # noqa: E402
from engine.run.config import TrainConfig, from_recipe  # noqa: E402
from engine.run.rundir import read_events  # noqa: E402
from tui.app import make_app  # noqa: E402

OPTIONS = {"data": "demo", "weights": "none", "loader": "tensor", "device": "cpu", "seed": 0}


def steady_rate(run_dir: Path) -> float:
    """Median training images/s over the epochs after the first."""
    epochs = [e for e in read_events(run_dir) if isinstance(e, ev.EpochEnd)]
    return statistics.median(e.images_per_sec for e in epochs[1:])


def headless(cfg: TrainConfig) -> float:
    args = [sys.executable, "-m", "tui.cli", "--headless", "--epochs", str(cfg.epochs), "--run-dir", cfg.run_dir]
    for key, value in OPTIONS.items():
        args += [f"--{key}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(args, check=True, capture_output=True, env=env, cwd=ROOT)
    return steady_rate(Path(cfg.run_dir))


async def with_app(cfg: TrainConfig) -> tuple[float, float]:
    """(images/s, UI process CPU share of one core while training)."""
    if os.environ.get("UI_NICE"):
        os.nice(int(os.environ["UI_NICE"]))
    app = make_app(cfg)
    me = psutil.Process()
    async with app.run_test(size=(120, 40)) as pilot:
        # Plain sleeps while measuring: pilot.pause() would add the harness's own work to the UI's.
        while app.run_state.epoch < 1:  # measure from the end of the warm-up epoch
            await asyncio.sleep(0.25)
        cpu0, wall0 = sum(me.cpu_times()[:2]), time.perf_counter()
        while app.run_state.finished is None and app.run_state.failed is None:
            await asyncio.sleep(0.25)
        share = (sum(me.cpu_times()[:2]) - cpu0) / (time.perf_counter() - wall0)
        await pilot.press("q")
    return steady_rate(Path(cfg.run_dir)), share


async def pause_latency(cfg: TrainConfig, presses: int = 6) -> list[float]:
    """Seconds from pressing p to the trainer's Paused event (its own clock, same machine)."""
    app = make_app(cfg)
    delays = []
    async with app.run_test(size=(120, 40)) as pilot:
        while app.run_state.global_step < 5:
            await pilot.pause(0.05)
        for _ in range(presses):
            pressed = time.time()
            await pilot.press("p")
            while app.run_state.state != "paused":
                await pilot.pause(0.01)
            assert app.run_state.paused_at is not None
            delays.append(app.run_state.paused_at - pressed)
            await pilot.press("p")
            while app.run_state.state == "paused":
                await pilot.pause(0.01)
            await pilot.pause(0.7)
        await pilot.press("q")
        await pilot.pause(0.2)
        if app.is_running:
            await pilot.click("#nosave")
    return delays


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    print(f"machine: {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="cifar-tui-overhead-"))
    heads, apps, shares = [], [], []
    for r in range(args.rounds):
        print(
            f"round {r + 1}/{args.rounds}: {args.epochs} epochs headless, then the same in the dashboard…", flush=True
        )
        heads.append(headless(from_recipe("tutorial", epochs=args.epochs, run_dir=str(tmp / f"h{r}"), **OPTIONS)))
        rate, share = asyncio.run(
            with_app(from_recipe("tutorial", epochs=args.epochs, run_dir=str(tmp / f"a{r}"), **OPTIONS))
        )
        apps.append(rate)
        shares.append(share)
        print(
            f"round {r + 1}: headless {heads[-1]:,.0f} img/s | app {apps[-1]:,.0f} img/s | UI CPU {100 * share:.1f}% of a core"
        )
    print("pause latency: pressing p during a 50-epoch run…", flush=True)
    cfg = from_recipe("tutorial", epochs=50, run_dir=str(tmp / "pause"), **OPTIONS)
    delays = asyncio.run(pause_latency(cfg))
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| training images/s, headless (median of rounds) | {statistics.median(heads):,.0f} |")
    print(f"| training images/s, dashboard at 120x40 | {statistics.median(apps):,.0f} |")
    ratios = [a / h for a, h in zip(apps, heads)]
    print(f"| ratio app / headless (median of the rounds' ratios; range) | {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f}) |")  # fmt: skip
    print(f"| UI process CPU while training (share of one core) | {100 * statistics.median(shares):.1f}% |")
    print(
        f"| `p` to paused, median / max over {len(delays)} presses | {1000 * statistics.median(delays):.0f} ms / {1000 * max(delays):.0f} ms |"
    )


if __name__ == "__main__":
    main()
