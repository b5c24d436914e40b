"""What the learning-rate finder costs: its steps and seconds against a training step of the
same run, on the CPU demo. Prints figures; it is not a test.

    python bench/lr_find_cost.py                       # the tutorial recipe, demo data
    python bench/lr_find_cost.py --recipe fast --batch-size 128

Any training option can follow (``--stem cifar``, ``--train-limit 4096``...).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from engine.options import config_from_args
from engine.run import events as ev
from engine.train.trainer import Trainer
from tui.options import dashboard_parser as build_parser


def run(argv: list[str]) -> tuple[list[ev.Event], float]:
    cfg = config_from_args(build_parser(argv).parse_args(argv))
    events: list[ev.Event] = []
    began = time.perf_counter()
    Trainer(cfg, events.append).run()
    return events, time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="finder runs to time (the median is printed)")
    args, training = p.parse_known_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="lr-find-cost-") as tmp:
        base = ["--data", "demo", "--device", "cpu", "--weights", "none", "--loader", "tensor",
                "--train-limit", "4096", "--test-limit", "200", *training]  # fmt: skip
        finds = []
        for i in range(args.rounds):
            events, total = run([*base, "--lr-find", "only", "--run-dir", f"{tmp}/find{i}"])
            found = next(e for e in events if isinstance(e, ev.LrFound))
            finds.append((found, total))
            print(f"round {i + 1}: {len(found.lrs)} steps in {found.seconds:.1f} s (whole command {total:.1f} s), "
                  f"valley {found.valley:.2e}" if found.valley else "no suggestion")  # fmt: skip
        # A training epoch of the same run, for the cost of one step.
        events, _ = run([*base, "--epochs", "1", "--run-dir", f"{tmp}/train"])
        end = next(e for e in events if isinstance(e, ev.EpochEnd))
        started = next(e for e in events if isinstance(e, ev.RunStarted))
        step_s = end.seconds / started.steps_per_epoch
        seconds = statistics.median(f.seconds for f, _ in finds)
        steps = statistics.median(len(f.lrs) for f, _ in finds)
        print("\n| finder steps | finder seconds | per step | a training step | finder in training steps |")
        print("|---|---|---|---|---|")
        print(
            f"| {steps:.0f} | {seconds:.1f} s | {seconds / steps * 1000:.0f} ms | {step_s * 1000:.0f} ms | "
            f"{seconds / step_s:.0f} |"
        )
        cfg = started.config
        print(
            f"\n{cfg['recipe']} recipe, {cfg['arch']} {cfg['stem']} stem, batch {cfg['batch_size']}, "
            f"{started.train_size} demo images, {started.steps_per_epoch} steps/epoch"
        )


if __name__ == "__main__":
    main()
