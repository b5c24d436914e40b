"""Training images/s on this machine's CPU, per data source, loader and stem: the CPU-speed
table of docs/benchmarks.md. ResNet-18 from scratch, batch 64; the median of the epochs
after the first (the first warms up the allocator and the loader's workers).

    python bench/cpu_speed.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import MINI, machine, need_mini
from engine.run import events as ev
from engine.run.config import from_recipe
from engine.train.trainer import Trainer


def images_per_sec(run_dir: Path, epochs: int, **options: object) -> float:
    seen: list[ev.Event] = []
    cfg = from_recipe("tutorial", epochs=epochs, weights="none", device="cpu", run_dir=str(run_dir), **options)  # type: ignore[arg-type]
    Trainer(cfg, seen.append).run()
    rates = [e.images_per_sec for e in seen if isinstance(e, ev.EpochEnd)]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args()
    print(f"machine: {machine()} | torch {torch.__version__} | {torch.get_num_threads()} threads")
    tmp = Path(tempfile.mkdtemp(prefix="cifar-tui-cpu-speed-"))
    plan = [
        ("cifar10-mini (1,000 train images)", "imagenet", "dataloader (the tutorial's)", {"data": str(MINI), "loader": "dataloader"}),
        ("cifar10-mini", "imagenet", "tensor", {"data": str(MINI), "loader": "tensor"}),
        ("demo (5,000 images)", "imagenet", "tensor", {"data": "demo", "loader": "tensor"}),
        ("demo, 1,000 images", "cifar", "tensor", {"data": "demo", "loader": "tensor", "train_limit": 1000}),
    ]  # fmt: skip
    if not need_mini():
        plan = [row for row in plan if not row[0].startswith("cifar10-mini")]
    print("\n| data | stem | loader | images/s (median epoch) |\n|---|---|---|---|")
    for i, (data, stem, loader, options) in enumerate(plan):
        rate = images_per_sec(tmp / f"run{i}", args.epochs, stem=stem, test_limit=100, **options)
        print(f"| {data} | {stem} | {loader} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
