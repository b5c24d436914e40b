"""Helpers shared by the benchmarks: the shared data copy, unpacked once per run."""

from __future__ import annotations

import os
import platform
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: 1,300 real CIFAR-10 images in ImageFolder form (100 train + 30 test per class), where the checkout has them.
MINI = ROOT.parent / "shared" / "data" / "cifar10-mini"
TARBALL_CANDIDATES = [ROOT / "carry" / "cifar10-jpeg.tar.gz", ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"]


def find_tarball() -> Path | None:
    return next((path for path in TARBALL_CANDIDATES if path.is_file()), None)


def unpack_cifar_jpeg(dest: Path | None = None) -> Path:
    """CIFAR-10 as JPEG files in ImageFolder form (train/ and test/, a folder per class) in a
    temporary folder; returns its root. From the shared JPEG copy where the checkout has one,
    else made from torchvision's CIFAR-10 download; else one line saying what is missing."""
    dest = dest or Path(tempfile.mkdtemp(prefix="cifar10-jpeg-"))
    tarball = find_tarball()
    if tarball is None:
        return _jpeg_from_torchvision(dest)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    # The archive may hold a top folder: find the one with train/ and test/.
    for candidate in [dest, *sorted(p for p in dest.iterdir() if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise SystemExit(f"bench: {tarball} holds no train/ and test/ folders")


def _jpeg_from_torchvision(dest: Path) -> Path:
    """Write torchvision's CIFAR-10 (downloaded once into the cache) as JPEG files."""
    from engine.run.config import default_cache_dir

    print(f"# no cifar10-jpeg.tar.gz in {' or '.join(str(p.parent) for p in TARBALL_CANDIDATES)}: making the JPEG "
          "copy from torchvision's CIFAR-10 (downloads 170 MB once)", flush=True)  # fmt: skip
    try:
        from torchvision.datasets import CIFAR10

        root = default_cache_dir() / "data"  # where cifar-tui keeps its own download
        splits = {"train": CIFAR10(root, train=True, download=True), "test": CIFAR10(root, train=False, download=True)}
    except Exception as exc:  # no network here: say what to do in one line
        raise SystemExit(f"bench: needs CIFAR-10 as JPEG files: put cifar10-jpeg.tar.gz in carry/ or ../shared/data/, "
                         f"or run where torchvision can download CIFAR-10 ({type(exc).__name__})") from None  # fmt: skip
    for split, data in splits.items():
        for i, (image, label) in enumerate(data):  # type: ignore[misc]
            folder = dest / split / data.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:05d}.jpg", quality=95)
    return dest


def need_mini() -> bool:
    """Whether the 1,300-image CIFAR-10 sample is here; says once what is skipped when it is not."""
    if MINI.is_dir():
        return True
    print(f"# {MINI} is not here (a checkout without the shared data): its rows are skipped", flush=True)
    return False


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def demo_image_folder(dest: Path, train_per_class: int = 26, test_per_class: int = 13) -> Path:
    """The built-in demo images written as an ImageFolder tree of PNGs (train/ and test/): the
    tutorial's ImageFolder code path on any machine, no data set needed (smoke runs)."""
    from PIL import Image

    from engine.data.demo import CLASS_NAMES, make_split

    for split, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        images, labels = make_split(per_class, seed)
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            folder = dest / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return dest
