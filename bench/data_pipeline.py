"""Images/s of training batches: cifar-tui's tensor pipeline vs the tutorial's DataLoader + PIL.

Both produce the same thing (random crop with 4-pixel padding, horizontal flip,
normalisation) from the same 50,000 CIFAR-10 training images
(../shared/data/cifar10-jpeg.tar.gz unpacked to a temporary folder), in the same run.

    python bench/data_pipeline.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torchvision
import torchvision.transforms as T

from bench.common import machine, unpack_cifar_jpeg
from engine.data.pipeline import MEAN, STD, LoaderBatches, TensorBatches
from engine.data.sources import load_image_folder


def rate(batches, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """Images per second drawn from an iterator of (x, y) batches for about ``seconds``."""
    it = iter(batches)
    next(it)  # warm-up: worker start, first allocation
    n, began = 0, time.perf_counter()
    for x, _ in it:
        n += x.shape[0]
        if time.perf_counter() - began > seconds:
            break
    return n / (time.perf_counter() - began)


def endless(make):  # type: ignore[no-untyped-def]
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    root = unpack_cifar_jpeg()
    began = time.perf_counter()
    data = load_image_folder(root, 32, lambda k, m: None, root.parent / "cache")
    print(f"decode 60,000 JPEGs once into a uint8 tensor: {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    load_image_folder(root, 32, lambda k, m: None, root.parent / "cache")
    print(f"load the decoded cache on later runs: {time.perf_counter() - began:.2f} s")
    cpu = torch.device("cpu")
    seed_tf = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.ToTensor(), T.Normalize(MEAN, STD)])
    rows = []
    for bs in (64, 512):
        tensor = rate(endless(TensorBatches(data.train, bs, cpu, seed=0).batches), args.seconds)
        arrays = rate(endless(LoaderBatches(data.train, bs, cpu, seed=0, workers=2).batches), args.seconds)
        folder = torchvision.datasets.ImageFolder(str(root / "train"), transform=seed_tf)
        jpeg = rate(
            endless(lambda e: torch.utils.data.DataLoader(folder, batch_size=bs, shuffle=True, num_workers=2)),  # noqa: B023
            args.seconds,
        )
        rows.append((bs, tensor, arrays, jpeg))
    print()
    print(
        "| batch | tensor pipeline (img/s) | tutorial DataLoader+PIL, arrays in memory | tutorial-style ImageFolder of JPEGs | ratio vs arrays | ratio vs JPEGs |"
    )
    print("|---|---|---|---|---|---|")
    for bs, tensor, arrays, jpeg in rows:
        print(f"| {bs} | {tensor:,.0f} | {arrays:,.0f} | {jpeg:,.0f} | {tensor / arrays:.1f}x | {tensor / jpeg:.1f}x |")


if __name__ == "__main__":
    main()
