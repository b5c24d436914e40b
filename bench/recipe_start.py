"""A recipe's first steps on the CPU: the loss curve and learning rate, to see a bad start
(a warm-up spike, a divergence) without a GPU. Prints figures; it is not a test.

    python bench/recipe_start.py --recipe fast --steps 120                    # demo data
    python bench/recipe_start.py --recipe fast --stem imagenet --jpeg --steps 120   # real CIFAR-10 (JPEG copy)

Any training option can follow (``--lr 0.2``, ``--warmup-epochs 1``, ``--epochs 2``...).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, unpack_cifar_jpeg
from engine.options import config_from_args
from engine.run import events as ev
from engine.run.controls import Controls
from engine.train.trainer import Trainer
from tui.options import dashboard_parser as build_parser


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="stop after this many training steps")
    p.add_argument("--every", type=int, default=10, help="print the mean loss of every N steps")
    p.add_argument("--jpeg", action="store_true", help="the shared JPEG copy of CIFAR-10 instead of demo data")
    args, training = p.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="recipe-start-") as tmp:
        data = str(unpack_cifar_jpeg(Path(tmp) / "data")) if args.jpeg else "demo"
        argv = ["--data", data, "--device", "cpu", "--weights", "none", "--run-dir", f"{tmp}/run",
                "--log-every", str(args.every), "--loader", "tensor", *training]  # fmt: skip
        cfg = config_from_args(build_parser(argv).parse_args(argv))
        controls = Controls()
        rows: list[tuple[int, float, float]] = []
        epochs: list[str] = []

        def sink(e: ev.Event) -> None:
            if isinstance(e, ev.Progress) and e.interval_loss is not None:
                rows.append((e.global_step, e.lr, e.interval_loss))
                print(f"step {e.global_step:5d}  lr {e.lr:.4f}  loss {e.interval_loss:.3f}", flush=True)
                if e.global_step >= args.steps:
                    controls.stop(save=False)
            elif isinstance(e, ev.EpochEnd):
                epochs.append(f"epoch {e.epoch}: test acc {100 * e.test_accuracy:.1f}%")
                print(epochs[-1], flush=True)
            elif isinstance(e, ev.Failed):
                print(f"failed: {e.error}: {e.message}", flush=True)

        began = time.perf_counter()
        Trainer(cfg, sink, controls).run()
        peak = max(rows, key=lambda r: r[2]) if rows else None
        print(f"# {machine()} | recipe {cfg.recipe} stem {cfg.stem} lr {cfg.lr:g} warm-up {cfg.warmup_epochs:g} "
              f"epochs of {cfg.epochs} | data {'cifar10-jpeg' if args.jpeg else 'demo'} | "
              f"{time.perf_counter() - began:.0f}s")  # fmt: skip
        if peak is not None:
            print(f"# highest interval loss {peak[2]:.3f} at step {peak[0]} (lr {peak[1]:.4f}); last {rows[-1][2]:.3f}")


if __name__ == "__main__":
    main()
