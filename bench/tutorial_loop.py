"""The tutorial's own training loop, as its code reads, on an ImageFolder copy of CIFAR-10:
the yardstick bench/gpu_run.py measures cifar-tui's recipes against.

Kept as the tutorial wrote it (its mechanics are what is measured): PIL RandomHorizontalFlip +
RandomCrop(32, padding=4) + ToTensor + Normalize, DataLoader(batch 64, shuffle, 2 workers),
torchvision resnet18 with a 10-way fc, CrossEntropyLoss, SGD lr 0.001 momentum 0.9,
``loss.item()`` every step, the running loss every 200 batches, and the test pass as the tutorial
does it (train mode, augmented test images, batch 64). Two differences, both forced: the data
is the JPEG ImageFolder copy (the GPU box is offline, no torchvision download) and the weights
start from scratch (no ImageNet download either).

    python bench/tutorial_loop.py DATA_ROOT [--epochs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
import torchvision.transforms as transforms
from torch import nn


def tutorial_loop(root: Path, epochs: int, device: torch.device, say: Any = print) -> dict[str, float]:
    """Train and test as the tutorial does; returns wall seconds split as gpu_run.py reports them."""
    began = time.perf_counter()
    transform = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(32, padding=4),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]
    )
    trainset = torchvision.datasets.ImageFolder(str(root / "train"), transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=64, shuffle=True, num_workers=2)
    testset = torchvision.datasets.ImageFolder(str(root / "test"), transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=64, shuffle=False, num_workers=2)
    resnet18 = torchvision.models.resnet18(weights=None)
    resnet18.fc = nn.Linear(resnet18.fc.in_features, len(trainset.classes))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(resnet18.parameters(), lr=0.001, momentum=0.9)
    resnet18.to(device)
    loaded = time.perf_counter()
    for epoch in range(epochs):
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data[0].to(device), data[1].to(device)
            optimizer.zero_grad()
            outputs = resnet18(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 200 == 199:
                say(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 200:.3f}")
                running_loss = 0.0
    trained = time.perf_counter()
    correct = total = 0
    with torch.no_grad():
        for data in testloader:
            images, labels = data[0].to(device), data[1].to(device)
            outputs = resnet18(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    tested = time.perf_counter()
    return {
        "epochs": epochs,
        "wall": tested - began,
        "load": loaded - began,
        "train": trained - loaded,
        "eval": tested - trained,
        "img_s": epochs * len(trainset) / max(trained - loaded, 1e-9),
        "acc": correct / max(total, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="ImageFolder root with train/ and test/")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    result = tutorial_loop(args.root, args.epochs, torch.device(args.device))
    print(", ".join(f"{k} {v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()
