"""Run the seed's recipe (2 epochs) and the ``fast`` recipe (to completion) on the JPEG CIFAR-10
copy and print a table: epochs, wall time split into data load / compile / training, images/s,
final test accuracy, peak GPU memory. Driven by bench/gpu.sh; needs torch, not textual.

    python bench/gpu_run.py [--smoke] [--compile] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import machine, unpack_cifar_jpeg
from engine import events as ev
from engine.config import from_recipe
from engine.trainer import Trainer


def run(name: str, **options: object) -> dict[str, object]:
    seen: list[ev.Event] = []
    began = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cfg = from_recipe(**options)  # type: ignore[arg-type]
    finished = Trainer(cfg, seen.append).run()
    wall = time.perf_counter() - began
    started = next(e for e in seen if isinstance(e, ev.RunStarted))
    epochs = [e for e in seen if isinstance(e, ev.EpochEnd)]
    load = started.t - seen[0].t  # data + model, up to the first step
    train_s = [e.seconds for e in epochs]
    compile_s = 0.0
    if cfg.compile and len(train_s) > 2:  # the first epoch's excess over a typical one
        compile_s = max(0.0, train_s[0] - statistics.median(train_s[1:]))
    return {
        "run": name,
        "epochs": finished.epochs_done,
        "wall": wall,
        "load": load,
        "compile": compile_s,
        "train": sum(train_s) - compile_s,
        "eval": sum(e.eval_seconds for e in epochs),
        "img_s": statistics.median(e.images_per_sec for e in epochs[1:] or epochs),
        "acc": finished.test_accuracy or 0.0,
        "peak": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
        "loader": started.loader,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch each: checks the script, not the speed")
    p.add_argument("--compile", action="store_true", help="also run fast with torch.compile")
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else machine()
    print(f"device: {device_name} | torch {torch.__version__} | CUDA {torch.version.cuda}")
    tmp = Path(tempfile.mkdtemp(prefix="cifar-tui-gpu-"))
    common: dict[str, object] = {"device": args.device, "progress_hz": 1.0, "log_every": 10**9}
    if args.smoke:
        common.update(data="demo", train_limit=256, test_limit=128)
        plan = [("tutorial x1", {"recipe": "tutorial", "epochs": 1, "weights": "none"}),
                ("fast x1", {"recipe": "fast", "epochs": 1, "batch_size": 128})]  # fmt: skip
    else:
        began = time.perf_counter()
        root = unpack_cifar_jpeg(tmp / "data")
        print(f"unpack cifar10-jpeg.tar.gz: {time.perf_counter() - began:.1f} s")
        common["data"] = str(root)
        # No network on the GPU box: the seed's ImageNet weights cannot be fetched, so it starts from scratch.
        plan = [("tutorial (seed) x2", {"recipe": "tutorial", "epochs": 2, "weights": "none"}),
                ("fast", {"recipe": "fast"})]  # fmt: skip
        if args.compile:
            plan.append(("fast + compile", {"recipe": "fast", "compile": True}))
    rows = []
    for i, (name, options) in enumerate(plan):
        rows.append(run(name, **common, **options, run_dir=str(tmp / f"run{i}")))
        r = rows[-1]
        print(f"{name}: {r['epochs']} epochs, acc {100 * float(r['acc']):.2f}%, wall {r['wall']:.1f} s", flush=True)
    print()
    print(
        "| run | loader | epochs | wall s | data+model load s | compile s | train s | eval s | img/s | test acc | peak GPU mem |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['loader']} | {r['epochs']} | {r['wall']:.1f} | {r['load']:.1f} | {r['compile']:.1f} | "
              f"{r['train']:.1f} | {r['eval']:.1f} | {r['img_s']:,.0f} | {100 * float(r['acc']):.2f}% | {r['peak']:.2f} GiB |")  # fmt: skip


if __name__ == "__main__":
    main()
