"""Batch sources for training and evaluation.

``TensorBatches`` keeps the whole data set as a uint8 tensor on the training
device and does shuffling, random crop with padding, horizontal flip and
normalisation for a whole batch at once: no per-image Python in the loop.
``LoaderBatches`` is the tutorial's torch DataLoader + PIL transforms, kept for
faithfulness and for data that does not fit in memory.

Both derive an epoch's order and augmentation from ``(seed, epoch)`` only, so an
epoch can be replayed from any step when a run resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from engine.data.sources import Split
from engine.run import stop_signals

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
PAD = 4


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def num_steps(n: int, batch_size: int, drop_last: bool = False, ranks: int = 1) -> int:
    """Batches per epoch. ``drop_last`` drops a ragged last batch (one shape for torch.compile);
    otherwise a ragged last batch is dropped only when a rank's share of it would be a single
    image (BatchNorm cannot train on one): with ``ranks`` processes each needs two."""
    full, rest = divmod(n, batch_size)
    if drop_last and full > 0:
        return full
    return full + (1 if rest >= 2 * ranks else 0)


@dataclass(frozen=True)
class Augmentation:
    """How training batches are augmented on the tensor path (the tutorial's: zero padding, random flip)."""

    pad_mode: str = "zeros"
    """``zeros`` (RandomCrop(32, padding=4)) or ``reflect`` (the 4-pixel border mirrors the image)."""
    flip: str = "random"
    """``random`` (p=0.5 each epoch), ``alternate`` (random in the first epoch, then each image's
    flip toggles every epoch: every image is seen both ways in any two epochs) or ``off``."""
    cutout: int = 0
    """Side of a square set to the mean (0 after normalisation) at a random place; 0 = off."""

    @property
    def is_seeds(self) -> bool:
        """True when this is exactly the tutorial's augmentation (the PIL DataLoader path can do it)."""
        return self == Augmentation()


class EpochPlan(NamedTuple):
    """One epoch's order and per-image augmentation draws, from (seed, epoch) alone."""

    order: torch.Tensor
    dx: torch.Tensor
    dy: torch.Tensor
    flips: torch.Tensor
    cut_y: torch.Tensor | None
    cut_x: torch.Tensor | None


class BatchSource(Protocol):
    steps_per_epoch: int
    name: str

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def normalize(x_u8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float, (x/255 - 0.5) / 0.5."""
    return x_u8.to(dtype).div_(127.5).sub_(1.0)


def pad_images(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Pad (N, C, H, W) images by PAD on every side with zeros or by mirroring (any dtype)."""
    if mode == "zeros":
        return F.pad(images, (PAD,) * 4)
    h, w = images.shape[-2:]

    def mirrored(n: int) -> torch.Tensor:  # [PAD..1, 0..n-1, n-2..n-1-PAD]: reflect, edge not repeated
        i = torch.arange(-PAD, n + PAD).abs()
        return torch.where(i > n - 1, 2 * (n - 1) - i, i)

    return images.index_select(2, mirrored(h)).index_select(3, mirrored(w))


def augment(padded: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Random-crop and flip a batch of padded uint8 images (B, C, H + 2*PAD, W + 2*PAD).

    ``dx``/``dy`` are crop offsets in [0, 2*PAD]; ``flip`` mirrors horizontally. Two
    gathers (rows, then columns with the flip folded into the column index) do it all.
    """
    b, c, hp, wp = padded.shape
    h, w = hp - 2 * PAD, wp - 2 * PAD
    dev = padded.device
    rows = (dy.view(b, 1) + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, wp)
    x = torch.gather(padded, 2, rows)
    cols = dx.view(b, 1) + torch.arange(w, device=dev)
    cols = torch.where(flip.view(b, 1), cols.flip(1), cols)
    return torch.gather(x, 3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def cut_out(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Set a size x size square at (top, left) of each normalised image to 0 (the mean), in place."""
    b, _, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).view(1, h)
    cols = torch.arange(w, device=dev).view(1, w)
    in_rows = (rows >= top.view(b, 1)) & (rows < top.view(b, 1) + size)
    in_cols = (cols >= left.view(b, 1)) & (cols < left.view(b, 1) + size)
    return x.masked_fill_((in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)), 0.0)


def _flip_generator(seed: int) -> torch.Generator:
    """The draws behind ``alternate`` flips: one per image for the whole run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + 0x5EEDF11B)


class TensorBatches:
    """Whole-batch augmentation over a data set held as a tensor on ``device``.

    For evaluation (``train=False``), ``pad_to_full`` pads the last batch with blank images so
    every batch has one shape (torch.compile compiles once); ``y`` is then shorter than ``x``.
    """

    name = "tensor"

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        seed: int,
        *,
        train: bool = True,
        channels_last: bool = False,
        augmentation: Augmentation = Augmentation(),
        drop_last: bool = False,
        pad_to_full: bool = False,
        shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
        ranks: int = 1,
    ) -> None:
        # Training images are stored pre-padded: no padding per batch.
        self.images = (pad_images(split.images, augmentation.pad_mode) if train else split.images).to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.train = train
        self.channels_last = channels_last
        self.augmentation = augmentation
        self.pad_to_full = pad_to_full and not train
        # Data-parallel: this rank's share of each global batch's indices (engine/ranks/group.py).
        self.shard = shard
        self.shard_size = -(-batch_size // ranks)  # the largest share of a batch
        n = len(split)
        self.steps_per_epoch = num_steps(n, batch_size, drop_last, ranks) if train else -(-n // batch_size)

    def epoch_plan(self, epoch: int) -> EpochPlan:
        """Order, crop offsets, flips and cutout places for one epoch, from (seed, epoch) alone."""
        n = self.labels.shape[0]
        aug = self.augmentation
        g = epoch_generator(self.seed, epoch)
        order = torch.randperm(n, generator=g)
        offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        if aug.flip == "alternate":
            flips = (torch.rand(n, generator=_flip_generator(self.seed)) < 0.5) ^ bool(epoch % 2)
        elif aug.flip == "off":
            flips = torch.zeros(n, dtype=torch.bool)
        cut_y = cut_x = None
        if aug.cutout:
            h, w = (int(s) - 2 * PAD for s in self.images.shape[-2:])
            cut_y = torch.randint(0, max(1, h - aug.cutout + 1), (n,), generator=g).to(self.device)
            cut_x = torch.randint(0, max(1, w - aug.cutout + 1), (n,), generator=g).to(self.device)
        dev = self.device
        return EpochPlan(order.to(dev), offsets[0].to(dev), offsets[1].to(dev), flips.to(dev), cut_y, cut_x)

    def eval_index(self, step: int) -> torch.Tensor:
        """The test-split places of an evaluation batch's labelled images (this rank's share)."""
        lo, hi = step * self.batch_size, min(int(self.labels.shape[0]), (step + 1) * self.batch_size)
        index = torch.arange(lo, hi, device=self.device)
        return index if self.shard is None else self.shard(index)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.labels.shape[0]
        plan = self.epoch_plan(epoch) if self.train else None
        for step in range(start_step, self.steps_per_epoch):
            lo, hi = step * self.batch_size, min(n, (step + 1) * self.batch_size)
            if plan is not None:
                idx = plan.order[lo:hi] if self.shard is None else self.shard(plan.order[lo:hi])
                x = normalize(augment(self.images[idx], plan.dx[idx], plan.dy[idx], plan.flips[idx]))
                if plan.cut_y is not None and plan.cut_x is not None:
                    x = cut_out(x, plan.cut_y[idx], plan.cut_x[idx], self.augmentation.cutout)
                y = self.labels[idx]
            elif self.shard is not None:
                idx = self.shard(torch.arange(lo, hi, device=self.device))
                x, y = normalize(self.images[idx]), self.labels[idx]
                if self.pad_to_full and len(idx) < self.shard_size:  # every rank's every batch: one shape
                    x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.shard_size - len(idx)))
            else:
                x, y = normalize(self.images[lo:hi]), self.labels[lo:hi]
                if self.pad_to_full and hi - lo < self.batch_size:
                    x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.batch_size - (hi - lo)))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


def sample_draws(seed: int, epoch: int, index: int) -> tuple[bool, int, int]:
    """One image's flip and crop offsets (top, left in [0, 2*PAD]) in one epoch, from a hash of
    ``(seed, epoch, index)`` (splitmix64): the same whichever worker draws it, and far cheaper
    than reseeding torch's RNG per image."""
    mask = (1 << 64) - 1
    z = (((seed * 1_000_003 + epoch) * 100_000_007 + index) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    span = 2 * PAD + 1
    return bool(z & 1), (z >> 8) % span, (z >> 24) % span


class _ArrayImages(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """uint8 HWC images served as PIL images through the tutorial's transforms (as CIFAR10 does).

    RandomHorizontalFlip and RandomCrop(size, padding=4) draw from :func:`sample_draws`
    instead of a worker's running RNG stream (same distributions), so which worker takes
    which batch, and where a resumed epoch starts, changes nothing: resume is exact here too."""

    def __init__(self, split: Split, seed: int) -> None:
        import torchvision.transforms as T

        self.images = split.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = split.labels.tolist()
        self.size = int(split.images.shape[-1])
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
        self.seed = seed
        self.epoch = 0  # set before each epoch's loader starts its workers

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import torchvision.transforms.functional as TF
        from PIL import Image

        flip, top, left = sample_draws(self.seed, self.epoch, i)
        img = Image.fromarray(self.images[i])
        if flip:  # RandomHorizontalFlip()
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = TF.crop(TF.pad(img, [PAD]), top, left, self.size, self.size)  # RandomCrop(size, padding=4)
        return self.to_tensor(img), self.labels[i]


class LoaderBatches:
    """The tutorial's pipeline: DataLoader, shuffle, workers, PIL flip + crop + ToTensor + Normalize.

    Data-parallel, each rank's loader takes its ``shard`` of every global batch of the one
    (seed, epoch) order, like a DistributedSampler with the epoch set, but keeping one process's
    global batches whatever the number of ranks, and a resumed epoch's place exactly."""

    name = "dataloader"

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        seed: int,
        workers: int,
        drop_last: bool = False,
        *,
        shard: Callable[[torch.Tensor], torch.Tensor] | None = None,
        ranks: int = 1,
    ) -> None:
        self.dataset = _ArrayImages(split, seed)
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.workers = workers
        self.shard = shard
        self.steps_per_epoch = num_steps(len(split), batch_size, drop_last, ranks)

    def batch_indices(self, epoch: int, start_step: int = 0) -> list[list[int]]:
        """This rank's images of each of the epoch's batches from ``start_step`` on."""
        order = torch.randperm(len(self.dataset), generator=epoch_generator(self.seed, epoch))
        batches = order[: self.steps_per_epoch * self.batch_size].split(self.batch_size)[start_step:]
        return [(b if self.shard is None else self.shard(b)).tolist() for b in batches]

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.dataset.epoch = epoch
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.batch_indices(epoch, start_step),
            num_workers=self.workers,
            generator=epoch_generator(self.seed, epoch),  # workers' base seed: not the global RNG's draw
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            worker_init_fn=stop_signals.helper_init(os.getpid()),
        )
        with stop_signals.held():  # the workers start here: a group's stop signal is the trainer's alone
            batches = iter(loader)
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
