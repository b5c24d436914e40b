"""What the mistakes gallery costs an evaluation: the same evaluation of the same model with and
without its bookkeeping (each batch's top-3 kept on the device, one read at the end: what the
training thread pays), alternated, median of ``--repeats``; and the writing of the image sheet
and JSON, which a thread of its own does while training goes on (engine/train/mistakes.py).

    python bench/gallery_cost.py [--images 1000] [--repeats 7] [--device cpu] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from engine.data.pipeline import TensorBatches
from engine.data.sources import load_data
from engine.run.config import from_recipe
from engine.train.evaluate import evaluate
from engine.train.mistakes import MistakeLog, write_gallery
from engine.train.models import build_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000, help="test images (the demo data has 1,000)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    quiet = lambda _kind, _text: None  # noqa: E731
    cfg = from_recipe("tutorial", data="demo", weights="none", device=args.device, test_limit=args.images)
    data = load_data(cfg, quiet)
    device = torch.device(args.device)
    model = build_model(cfg, len(data.class_names), quiet).to(device)
    source = TensorBatches(data.test, args.batch_size, device, 0, train=False)
    folder = Path(tempfile.mkdtemp(prefix="gallery-cost-"))

    def plain() -> float:
        began = time.perf_counter()
        evaluate(model, source, len(data.class_names))
        return time.perf_counter() - began

    def with_gallery() -> tuple[float, float]:
        began = time.perf_counter()
        log = MistakeLog()
        result = evaluate(model, source, len(data.class_names), predictions=log.add)
        rows = log.rows()
        on_the_training_thread = time.perf_counter() - began
        written = write_gallery(folder, rows, data.test.images, data.class_names, {
            "epoch": 0, "step": 0, "global_step": 0, "accuracy": result.accuracy})  # fmt: skip
        return on_the_training_thread, written

    plain()  # warm-up (allocator, kernels)
    with_gallery()
    bare, full, writes = [], [], []
    for _ in range(args.repeats):
        bare.append(plain())
        total, written = with_gallery()
        full.append(total)
        writes.append(written)
    a, b, w = statistics.median(bare), statistics.median(full), statistics.median(writes)
    print(f"{machine()} | {args.device} | {args.images} test images, batch {args.batch_size}, {args.repeats} repeats")
    print(f"evaluation alone: {a * 1000:.0f} ms; with the gallery's bookkeeping: {b * 1000:.0f} ms "
          f"({(b - a) * 1000:+.0f} ms, {100 * (b - a) / a:+.1f}%); writing the files, in the writer's thread: "
          f"{w * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
