"""The tensor pipeline: augmentation correctness, determinism, and the demo data set."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.data.demo import CLASS_NAMES, make_demo
from engine.data.pipeline import PAD, TensorBatches, augment, normalize, num_steps
from engine.data.sources import Split


def _split(n: int = 64, size: int = 32) -> Split:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    # Encode each image's label in its pixels so alignment can be checked after augmentation.
    labels = torch.arange(n) % 10
    images[:, 0, 8:24, 8:24] = labels.view(n, 1, 1).to(torch.uint8) * 20
    return Split(images, labels)


def test_augment_matches_reference_crop_and_flip() -> None:
    split = _split(16)
    dx = torch.randint(0, 2 * PAD + 1, (16,))
    dy = torch.randint(0, 2 * PAD + 1, (16,))
    flip = torch.rand(16) < 0.5
    padded = torch.nn.functional.pad(split.images, (PAD,) * 4)
    out = augment(padded, dx, dy, flip)
    for i in range(16):
        ref = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)


def test_batches_keep_labels_aligned_and_normalised() -> None:
    split = _split(100)
    src = TensorBatches(split, 32, torch.device("cpu"), seed=1)
    seen = 0
    for x, y in src.batches(0):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert x.min() >= -1.0 and x.max() <= 1.0
        # The centre patch survives any crop of <= 4 px: its value still encodes the label.
        centre = ((x[:, 0, 12:20, 12:20] + 1) * 127.5).round()
        assert torch.equal(centre.amin((1, 2)), (y * 20).float())
        seen += len(y)
    assert seen == 100


def test_every_image_appears_once_per_epoch_and_order_changes() -> None:
    split = _split(96)
    split.images[:, 1, 0, 0] = torch.arange(96, dtype=torch.uint8)
    src = TensorBatches(split, 32, torch.device("cpu"), seed=3)

    def epoch_labels(epoch: int) -> list[int]:
        return [int(v) for _, y in src.batches(epoch) for v in y]

    first, second = epoch_labels(0), epoch_labels(1)
    assert sorted(first) == sorted(split.labels.tolist())
    assert first != second


def test_same_seed_same_batches_and_resume_from_a_step() -> None:
    split = _split(128)
    a = TensorBatches(split, 32, torch.device("cpu"), seed=7)
    b = TensorBatches(split, 32, torch.device("cpu"), seed=7)
    full = list(a.batches(2))
    tail = list(b.batches(2, start_step=2))
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(full[2:], tail))
    other = list(TensorBatches(split, 32, torch.device("cpu"), seed=8).batches(2))
    assert not torch.equal(full[0][0], other[0][0])


def test_crop_and_flip_distribution() -> None:
    n = 20000
    src = TensorBatches(_split(n), 512, torch.device("cpu"), seed=0)
    _, dx, dy, flips, _, _ = src.epoch_plan(0)
    assert abs(flips.float().mean().item() - 0.5) < 0.02
    for offsets in (dx, dy):
        counts = torch.bincount(offsets, minlength=2 * PAD + 1).float() / n
        assert offsets.min() == 0 and offsets.max() == 2 * PAD
        assert (counts - 1 / (2 * PAD + 1)).abs().max() < 0.02


def test_normalize_matches_the_seeds_totensor_and_normalize() -> None:
    import torchvision.transforms as T
    from PIL import Image

    x = _split(4).images
    seed = T.Compose([T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    expected = torch.stack([seed(Image.fromarray(img.permute(1, 2, 0).numpy())) for img in x])
    assert torch.allclose(normalize(x), expected, atol=1e-6)


def test_trailing_single_image_batch_is_dropped() -> None:
    assert num_steps(65, 64) == 1 and num_steps(66, 64) == 2 and num_steps(64, 64) == 1


def test_demo_set_is_deterministic_and_balanced() -> None:
    (xa, ya), (ta, tya) = make_demo(seed=0)
    (xb, yb), _ = make_demo(seed=0)
    (xc, _), _ = make_demo(seed=1)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    assert torch.bincount(ya).tolist() == [500] * len(CLASS_NAMES)
    assert torch.bincount(tya).tolist() == [100] * len(CLASS_NAMES)
    assert xa.shape == (5000, 3, 32, 32) and xa.dtype == torch.uint8
    assert not any(torch.equal(ta[0], x) for x in xa[:500])  # test images are not training images


def test_dataloader_augmentation_is_the_seeds_and_independent_of_workers() -> None:
    """Flip p=0.5 and crop offsets uniform in [0, 8], as RandomHorizontalFlip + RandomCrop(32, padding=4);
    the same batches whether 0 or 2 workers draw them."""
    from engine.data.pipeline import LoaderBatches, sample_draws

    draws = [sample_draws(0, 3, i) for i in range(45_000)]
    assert abs(sum(f for f, _, _ in draws) / len(draws) - 0.5) < 0.01
    for k in (1, 2):
        counts = torch.bincount(torch.tensor([d[k] for d in draws]), minlength=2 * PAD + 1).float() / len(draws)
        assert counts.numel() == 2 * PAD + 1 and (counts - 1 / (2 * PAD + 1)).abs().max() < 0.01
    split = _split(96)
    one = list(LoaderBatches(split, 32, torch.device("cpu"), seed=5, workers=0).batches(1))
    two = list(LoaderBatches(split, 32, torch.device("cpu"), seed=5, workers=2).batches(1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two))
    other_epoch = list(LoaderBatches(split, 32, torch.device("cpu"), seed=5, workers=0).batches(2))
    assert not torch.equal(one[0][0], other_epoch[0][0])


def test_data_parallel_ranks_split_each_one_process_batch_on_both_loaders() -> None:
    """Two ranks' shares of every batch are exactly one process's batch (same images, same
    augmentation), from any step a resumed epoch starts at; and no rank is left a single
    image of a ragged batch (BatchNorm cannot train on one)."""
    from engine.data.pipeline import LoaderBatches

    split = _split(100)  # batch 32: three full batches, then 4 images (2 per rank)
    cpu = torch.device("cpu")

    def rank(r: int) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda index: index.tensor_split(2)[r]

    for make in (
        lambda **kw: TensorBatches(split, 32, cpu, seed=2, **kw),
        lambda **kw: LoaderBatches(split, 32, cpu, seed=2, workers=0, **kw),
    ):
        alone = list(make().batches(3, 1))
        shares = [list(make(shard=rank(r), ranks=2).batches(3, 1)) for r in (0, 1)]
        assert len(alone) == len(shares[0]) == len(shares[1]) == 3  # steps 1, 2, 3 of 4
        for (x, y), (x0, y0), (x1, y1) in zip(alone, *shares):
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
            assert min(len(y0), len(y1)) >= 2
    assert num_steps(99, 32, ranks=2) == 3 and num_steps(100, 32, ranks=2) == 4  # 3 left: one rank would get 1
