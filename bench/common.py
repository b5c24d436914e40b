"""Helpers shared by the benchmarks: the shared data copy, unpacked once per run."""

from __future__ import annotations

import os
import platform
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: 1,300 real CIFAR-10 images in ImageFolder form (100 train + 30 test per class): small enough for smoke runs.
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
