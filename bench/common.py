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


def find_tarball() -> Path:
    for path in TARBALL_CANDIDATES:
        if path.is_file():
            return path
    raise SystemExit(f"cifar10-jpeg.tar.gz not found in {', '.join(map(str, TARBALL_CANDIDATES))}")


def unpack_cifar_jpeg(dest: Path | None = None) -> Path:
    """Unpack the JPEG CIFAR-10 copy (ImageFolder layout) into a temporary folder; returns its root."""
    dest = dest or Path(tempfile.mkdtemp(prefix="cifar10-jpeg-"))
    with tarfile.open(find_tarball()) as tar:
        tar.extractall(dest, filter="data")
    # The archive may hold a top folder: find the one with train/ and test/.
    for candidate in [dest, *sorted(p for p in dest.iterdir() if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise SystemExit(f"no train/ and test/ inside {dest}")


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
    seed's ImageFolder code path on any machine, no data set needed (smoke runs)."""
    from PIL import Image

    from engine.data.demo import CLASS_NAMES, make_split

    for split, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        images, labels = make_split(per_class, seed)
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            folder = dest / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return dest
