"""Data sources: CIFAR-10 through torchvision, the built-in demo set, or an ImageFolder tree.

Every source ends as a :class:`DataBundle`: uint8 image tensors (N, 3, H, W) with
int64 labels, plus class names. Folders are decoded once and cached on disk,
keyed by the folder's file list, sizes and mtimes, so a changed folder is
decoded again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.data import demo as demo_data
from engine.run.config import TrainConfig, default_cache_dir
from engine.run.errors import DataError, DownloadError, first_line
from engine.run.events import Phase
from engine.run.fileio import atomic_torch_save
from engine.run.wording import CountProgress

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

Notify = Callable[[str, str], None]
"""Callback(level_or_state, message) used to report slow phases and warnings."""


@dataclass
class Split:
    """Images as uint8 (N, 3, H, W) and int64 labels (N,), on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, limit: int, seed: int) -> Split:
        """A seeded random subset of at most ``limit`` items (all when 0)."""
        keep = subset_indices(len(self), limit, seed)
        if keep is None:
            return self
        idx = torch.tensor(keep, dtype=torch.int64)
        return Split(self.images[idx].contiguous(), self.labels[idx].contiguous())


@dataclass
class DataBundle:
    train: Split
    test: Split
    class_names: list[str]
    source: str
    """Human-readable description, e.g. 'CIFAR-10 (torchvision, ~/.cache/...)'."""


def load_data(cfg: TrainConfig, notify: Notify) -> DataBundle:
    """Load the configured data set; raise DataError/DownloadError with a clear message."""
    if cfg.data == "demo":
        (xtr, ytr), (xte, yte) = demo_data.make_demo(cfg.seed)
        bundle = DataBundle(Split(xtr, ytr), Split(xte, yte), list(demo_data.CLASS_NAMES), "demo (built-in, generated)")
    elif cfg.data == "cifar10":
        bundle = load_cifar10(Path(cfg.data_dir) if cfg.data_dir else default_cache_dir() / "data", notify)
    else:
        limits = ((cfg.train_limit, cfg.seed), (cfg.test_limit, cfg.seed + 1))
        bundle = load_image_folder(Path(cfg.data), cfg.image_size, notify, limits=limits)
    bundle.train = bundle.train.subset(cfg.train_limit, cfg.seed)
    bundle.test = bundle.test.subset(cfg.test_limit, cfg.seed + 1)
    return bundle


def load_cifar10(root: Path, notify: Notify) -> DataBundle:
    """CIFAR-10 through ``torchvision.datasets.CIFAR10(download=True)``."""
    import torchvision

    if not (root / "cifar-10-batches-py").is_dir():
        notify(Phase.DOWNLOADING, f"downloading CIFAR-10 (163 MB) to {root}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        train = torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
        test = torchvision.datasets.CIFAR10(root=str(root), train=False, download=True)
    except Exception as exc:  # network errors come as URLError, OSError, RuntimeError...
        raise DownloadError(
            f"could not download CIFAR-10 into {root} ({first_line(exc)}); without network use --data demo, "
            f"or --data PATH (an image folder with train/ and test/), or place cifar-10-python.tar.gz in {root}",
            resource="data",
        ) from exc

    def split(ds: torchvision.datasets.CIFAR10) -> Split:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return Split(images, torch.tensor(ds.targets, dtype=torch.int64))

    return DataBundle(split(train), split(test), list(train.classes), f"CIFAR-10 (torchvision, {root})")


def _find_test_dir(root: Path) -> Path:
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root} has no test/ or val/ folder (expected {root}/train/<class>/ and {root}/test/<class>/)")


def _list_split(split_dir: Path, classes: list[str], notify: Notify) -> list[tuple[str, int, int, int]]:
    """(path, label, size, mtime_ns) for each image file; non-image files are skipped with a warning."""
    items: list[tuple[str, int, int, int]] = []
    skipped = 0
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise DataError(f"class folder {name!r} is in train/ but not in {split_dir.name}/ ({class_dir})")
        count = 0
        with os.scandir(class_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not entry.is_file():
                    continue
                if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    skipped += 1
                    continue
                st = entry.stat()
                items.append((entry.path, label, st.st_size, st.st_mtime_ns))
                count += 1
        if count == 0:
            raise DataError(f"class folder {class_dir} holds no images")
    if skipped:
        notify("warning", f"skipped {skipped} non-image file(s) in {split_dir}")
    return items


def _decode(path: str, size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    bomb = Image.DecompressionBombError  # an image far larger than it looks: corrupt for our purposes
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")  # grayscale, palette and RGBA become RGB
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    except bomb as exc:
        raise DataError(f"cannot read image {path}: a corrupt image (too large to decode safely: "
                        "a decompression bomb?)") from exc  # fmt: skip
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return data.view(size, size, 3).permute(2, 0, 1)


def _decode_split(items: list[tuple[str, int, int, int]], size: int, progress: CountProgress | None = None) -> Split:
    images = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
    # PIL releases the GIL while decoding, so threads help even for tiny images.
    pool = ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1))
    try:
        for i, img in enumerate(pool.map(lambda it: _decode(it[0], size), items, chunksize=256)):
            images[i] = img
            if progress is not None:
                progress.step()
    finally:  # a stop (or a bad image) must not wait for the rest of the folder to decode
        pool.shutdown(wait=False, cancel_futures=True)
    return Split(images, torch.tensor([it[1] for it in items], dtype=torch.int64))


def folder_cache_key(root: Path, size: int, listing: list[tuple[str, int, int, int]]) -> str:
    h = hashlib.sha256(f"v1|{root.resolve()}|{size}".encode("utf-8", "surrogateescape"))
    for path, label, nbytes, mtime in listing:
        h.update(f"{path}|{label}|{nbytes}|{mtime}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


Limits = tuple[tuple[int, int], tuple[int, int]]
"""(limit, seed) for train and test: 0 means all."""


def subset_indices(n: int, limit: int, seed: int) -> list[int] | None:
    """The indices :meth:`Split.subset` keeps (None: all), so a folder decodes only those images."""
    if not limit or limit >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].tolist()


def load_image_folder(
    root: Path, size: int, notify: Notify, cache_dir: Path | None = None, limits: Limits = ((0, 0), (0, 0))
) -> DataBundle:
    """An ImageFolder tree (train/<class>/*, test/<class>/* or val/<class>/*), decoded once and cached.
    A folder the system will not list (permissions, I/O error, odd names) is a DataError naming it."""
    try:
        return _load_image_folder(root, size, notify, cache_dir, limits)
    except OSError as exc:
        where = exc.filename if exc.filename else root
        raise DataError(f"cannot read {where}: {exc.strerror or exc}") from exc


def _load_image_folder(root: Path, size: int, notify: Notify, cache_dir: Path | None, limits: Limits) -> DataBundle:
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"{root} has no train/ folder (expected {root}/train/<class>/ and {root}/test/<class>/)")
    test_dir = _find_test_dir(root)
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{train_dir} holds no class folders")
    if len(classes) < 2:
        raise DataError(f"{train_dir} holds only one class folder; a classifier needs at least two")
    extra = sorted(e.name for e in os.scandir(test_dir) if e.is_dir() and e.name not in classes)
    if extra:
        raise DataError(f"class folder {extra[0]!r} is in {test_dir.name}/ but not in train/")
    listing = [_list_split(train_dir, classes, notify), _list_split(test_dir, classes, notify)]
    for i, (limit, seed) in enumerate(limits):  # decode only what the run uses (--train-limit, --test-limit)
        keep = subset_indices(len(listing[i]), limit, seed)
        if keep is not None:
            listing[i] = [listing[i][j] for j in keep]
    key = folder_cache_key(root, size, listing[0] + listing[1])
    cache = (cache_dir or default_cache_dir() / "decoded") / f"{key}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            return DataBundle(
                Split(blob["train_x"], blob["train_y"]),
                Split(blob["test_x"], blob["test_y"]),
                classes,
                f"{root} (decoded cache)",
            )
        except Exception:
            notify("warning", f"decoded-image cache {cache} unreadable; decoding again")
    notify(Phase.LOADING_DATA, f"decoding {len(listing[0]) + len(listing[1])} images from {root} (cached afterwards)")
    # A long first start is visible: 'decoding 12,000/60,000 images, 750/s, ETA 1m04s' every 2 s.
    progress = CountProgress(
        "decoding", "images", len(listing[0]) + len(listing[1]), lambda m: notify(Phase.LOADING_DATA, m)
    )
    train, test = (_decode_split(items, size, progress) for items in listing)
    try:
        atomic_torch_save(
            {"train_x": train.images, "train_y": train.labels, "test_x": test.images, "test_y": test.labels}, cache
        )
    except OSError as exc:  # a read-only cache only costs speed next time
        notify("warning", f"could not write decoded-image cache {cache}: {exc}")
    return DataBundle(train, test, classes, str(root))
