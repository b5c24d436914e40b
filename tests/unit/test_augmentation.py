"""The fast recipes' augmentation options, each seen in the batches it produces, and test-time
augmentation; and the tensor pipeline against the tutorial's PIL transforms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.data.pipeline import (
    PAD,
    Augmentation,
    LoaderBatches,
    TensorBatches,
    augment,
    normalize,
    num_steps,
    pad_images,
    sample_draws,
)
from engine.data.sources import Split
from engine.train.evaluate import evaluate, tta_logits

CPU = torch.device("cpu")


def _white(n: int, size: int = 32) -> Split:
    """All-white images: any pixel that is not 1.0 after normalisation came from the augmentation."""
    return Split(torch.full((n, 3, size, size), 255, dtype=torch.uint8), torch.arange(n) % 10)


def _batches(split: Split, epoch: int = 0, **aug: object) -> torch.Tensor:
    src = TensorBatches(split, 64, CPU, seed=0, augmentation=Augmentation(**aug))  # type: ignore[arg-type]
    return torch.cat([x for x, _ in src.batches(epoch)])


def test_zero_padding_shows_black_borders_and_reflect_padding_never_does() -> None:
    split = _white(256)
    assert (_batches(split, pad_mode="zeros") == -1.0).any()  # a shifted crop brings in black
    assert (_batches(split, pad_mode="reflect") == 1.0).all()


def test_reflect_padding_mirrors_the_image_without_repeating_the_edge() -> None:
    x = torch.randint(0, 256, (3, 3, 10, 12), dtype=torch.uint8)
    expected = F.pad(x.float(), (PAD,) * 4, mode="reflect")
    assert torch.equal(pad_images(x, "reflect").float(), expected)


def test_cutout_blanks_one_square_of_the_given_size_inside_each_image() -> None:
    images = _batches(_white(256), pad_mode="reflect", cutout=12)
    blank = images == 0.0  # the mean after normalisation
    assert (blank.sum((1, 2, 3)) == 3 * 12 * 12).all()
    rows, cols = blank[:, 0].any(2), blank[:, 0].any(1)
    assert (rows.sum(1) == 12).all() and (cols.sum(1) == 12).all()  # one square, not scattered pixels
    tops = rows.float().argmax(1)
    assert len(set(tops.tolist())) > 10  # placed at random, anywhere in the image
    assert (_batches(_white(64), pad_mode="reflect") != 0.0).all()  # off by default


def test_alternate_flip_shows_each_image_both_ways_in_any_two_epochs() -> None:
    src = TensorBatches(_white(2000), 500, CPU, seed=4, augmentation=Augmentation(flip="alternate"))
    flips = [src.epoch_plan(e).flips for e in range(4)]
    assert abs(flips[0].float().mean().item() - 0.5) < 0.05
    assert bool((flips[0] ^ flips[1]).all()) and bool((flips[1] ^ flips[2]).all())
    assert torch.equal(flips[0], flips[2]) and torch.equal(flips[1], flips[3])
    random = TensorBatches(_white(2000), 500, CPU, seed=4)
    assert not bool((random.epoch_plan(0).flips ^ random.epoch_plan(1).flips).all())
    off = TensorBatches(_white(2000), 500, CPU, seed=4, augmentation=Augmentation(flip="off"))
    assert not off.epoch_plan(0).flips.any()


def test_drop_last_gives_every_step_one_shape() -> None:
    assert num_steps(1030, 500, drop_last=True) == 2 and num_steps(1030, 500) == 3
    assert num_steps(300, 500, drop_last=True) == 1  # smaller than one batch: keep it rather than train on nothing
    src = TensorBatches(_white(1030), 500, CPU, seed=0, drop_last=True)
    assert [len(y) for _, y in src.batches(0)] == [500, 500]


def test_padded_evaluation_batches_give_the_same_result() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    split = Split(torch.randint(0, 256, (70, 3, 32, 32), dtype=torch.uint8), torch.arange(70) % 10)
    plain = TensorBatches(split, 32, CPU, 0, train=False)
    padded = TensorBatches(split, 32, CPU, 0, train=False, pad_to_full=True)
    assert [x.shape[0] for x, _ in padded.batches(0)] == [32, 32, 32]
    a, b = evaluate(model, plain, 10), evaluate(model, padded, 10)
    assert a.confusion == b.confusion and abs(a.loss - b.loss) < 1e-5


def test_translation_tta_averages_the_shifted_and_mirrored_views() -> None:
    seen: list[torch.Tensor] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return x.mean((1, 2, 3)).unsqueeze(1) * torch.arange(1.0, 4.0)

    x = torch.randn(2, 3, 8, 8)
    out = tta_logits(Probe(), x, flip=True, translate=True)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    up_left, down_right = padded[..., :8, :8], padded[..., 2:, 2:]
    expected = [x, x.flip(3), up_left, up_left.flip(3), down_right, down_right.flip(3)]
    assert len(seen) == 6 and all(torch.equal(a, b) for a, b in zip(seen, expected))

    def logits(v: torch.Tensor) -> torch.Tensor:
        return v.mean((1, 2, 3)).unsqueeze(1) * torch.arange(1.0, 4.0)

    flipped_mean = [(logits(v) + logits(v.flip(3))) / 2 for v in (x, up_left, down_right)]
    assert torch.allclose(out, 0.5 * flipped_mean[0] + 0.25 * flipped_mean[1] + 0.25 * flipped_mean[2])
    assert len(seen) == 6
    seen.clear()
    tta_logits(Probe(), x, flip=False, translate=False)
    assert len(seen) == 1


def test_tensor_pipeline_equals_the_seeds_pil_transforms_for_the_same_draws() -> None:
    """The tutorial recipe on a GPU uses the tensor pipeline: for the same flip and crop draws it
    gives the tutorial's PIL RandomHorizontalFlip + RandomCrop(32, padding=4) + ToTensor + Normalize
    images exactly; the draws are uniform in both (tests/unit/test_pipeline.py)."""
    g = torch.Generator().manual_seed(1)
    split = Split(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(40) % 10)
    loader = LoaderBatches(split, 8, CPU, seed=3, workers=0)
    loader.dataset.epoch = 2
    padded = pad_images(split.images, "zeros")
    for i in range(40):
        flip, top, left = sample_draws(3, 2, i)
        # PIL flips, then crops; the tensor path crops the unflipped image at the mirrored offset, then flips.
        dx = torch.tensor([2 * PAD - left if flip else left])
        ours = normalize(augment(padded[i : i + 1], dx, torch.tensor([top]), torch.tensor([flip])))[0]
        seeds, label = loader.dataset[i]
        assert label == int(split.labels[i])
        assert torch.allclose(ours, seeds, atol=1e-6), f"image {i} (flip {flip}, top {top}, left {left})"
