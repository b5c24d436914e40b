"""A procedurally generated 10-class 32x32 image set, made in memory from a seed.

It exists so the tool can be tried anywhere, offline, in seconds: each class is a
shape or texture drawn at a random position, size and colour on a noisy
background, easy enough to learn to well above 90% in a couple of CPU epochs.
"""

from __future__ import annotations

import torch

CLASS_NAMES = [
    "disc",
    "square",
    "triangle",
    "cross",
    "ring",
    "h-stripes",
    "v-stripes",
    "checker",
    "diagonal",
    "dots",
]
SIZE = 32
_PALETTE = [
    (0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 0.9), (0.9, 0.9, 0.1), (0.9, 0.1, 0.9),
    (0.1, 0.9, 0.9), (1.0, 0.6, 0.1), (0.5, 0.1, 0.6), (0.6, 1.0, 0.6), (0.2, 0.2, 0.2),
]  # fmt: skip


def _masks(cls: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Boolean foreground masks (n, SIZE, SIZE) for class ``cls``."""
    coords = torch.arange(SIZE, dtype=torch.float32)
    yy = coords.view(1, SIZE, 1)
    xx = coords.view(1, 1, SIZE)
    cy = torch.randint(12, 21, (n, 1, 1), generator=g).float()
    cx = torch.randint(12, 21, (n, 1, 1), generator=g).float()
    r = torch.randint(8, 13, (n, 1, 1), generator=g).float()
    dy, dx = yy - cy, xx - cx
    period = torch.randint(4, 8, (n, 1, 1), generator=g)
    phase = torch.randint(0, 6, (n, 1, 1), generator=g)
    iy = yy.long() + phase
    ix = xx.long() + phase
    dist2 = dx**2 + dy**2
    if cls == 0:
        return dist2 <= r**2
    if cls == 1:
        return torch.maximum(dx.abs(), dy.abs()) <= r * 0.8
    if cls == 2:
        return (dy >= -r) & (dy <= r) & (dx.abs() <= (dy + r) / 2)
    if cls == 3:
        arm = r / 3
        return ((dx.abs() <= arm) & (dy.abs() <= r)) | ((dy.abs() <= arm) & (dx.abs() <= r))
    if cls == 4:
        return (dist2 <= r**2) & (dist2 >= (r * 0.55) ** 2)
    if cls == 5:
        return ((iy // period) % 2 == 0).expand(n, SIZE, SIZE)
    if cls == 6:
        return ((ix // period) % 2 == 0).expand(n, SIZE, SIZE)
    if cls == 7:
        return ((iy // period + ix // period) % 2 == 0).expand(n, SIZE, SIZE)
    if cls == 8:
        return (((iy + ix) // period) % 2 == 0).expand(n, SIZE, SIZE)
    return ((iy % period) < 2) & ((ix % period) < 2)


def make_split(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each class: uint8 (N, 3, 32, 32) and int64 labels, shuffled."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for cls in range(len(CLASS_NAMES)):
        mask = _masks(cls, per_class, g).unsqueeze(1)  # (n, 1, H, W)
        # Each class leans towards its own colour (a cue a net picks up in one epoch); shape does the rest.
        base = torch.tensor(_PALETTE[cls]).view(1, 3, 1, 1)
        fg = (base + 0.5 * (torch.rand(per_class, 3, 1, 1, generator=g) - 0.5)).clamp(0, 1)
        # Background is the foreground's complement, jittered: always visible contrast.
        bg = (1 - fg + 0.25 * (torch.rand(per_class, 3, 1, 1, generator=g) - 0.5)).clamp(0, 1)
        img = torch.where(mask, fg, bg) + 0.08 * torch.randn(per_class, 3, SIZE, SIZE, generator=g)
        images.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
        labels.append(torch.full((per_class,), cls, dtype=torch.int64))
    x, y = torch.cat(images), torch.cat(labels)
    order = torch.randperm(len(y), generator=g)
    return x[order].contiguous(), y[order].contiguous()


def make_demo(
    seed: int = 0, train_per_class: int = 500, test_per_class: int = 100
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Train and test splits from disjoint random streams of the same seed."""
    return make_split(train_per_class, seed * 2 + 1), make_split(test_per_class, seed * 2 + 2)
