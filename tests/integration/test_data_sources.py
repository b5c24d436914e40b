"""Data sources: ImageFolder on real CIFAR-10 images, torchvision's CIFAR-10 code, download failures."""

from __future__ import annotations

import pickle
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from engine.data.sources import CIFAR10_CLASSES, load_cifar10, load_image_folder
from engine.run import events as ev
from engine.run.errors import DataError, DownloadError
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config


def no_notes(kind: str, message: str) -> None:
    pass


def test_image_folder_run_on_real_cifar_images(tmp_path: Path, mini_data: Path, recorder: Recorder) -> None:
    cfg = tiny_config(tmp_path, data=str(mini_data), train_limit=0, test_limit=0, batch_size=64)
    finished = Trainer(cfg, recorder).run()
    assert finished.reason == "completed"
    started = recorder.of(ev.RunStarted)[0]
    assert (started.train_size, started.test_size) == (1000, 300)
    evaluation = recorder.of(ev.Evaluation)[-1]
    assert evaluation.class_names == CIFAR10_CLASSES and len(evaluation.per_class) == 10
    ckpt = torch.load(Path(cfg.run_dir) / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["class_names"] == CIFAR10_CLASSES


def make_folder(root: Path, classes: dict[str, int], test: dict[str, int] | None = None, size: int = 32) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, counts in (("train", classes), ("test", test if test is not None else classes)):
        for name, n in counts.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_image_folder_decodes_once_and_redecodes_when_changed(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", {"a": 3, "b": 2})
    cache = tmp_path / "cache"
    notes: list[str] = []
    first = load_image_folder(root, 32, lambda k, m: notes.append(m), cache)
    assert len(first.train) == 5 and first.class_names == ["a", "b"]
    assert any("decoding" in n for n in notes)
    notes.clear()
    again = load_image_folder(root, 32, lambda k, m: notes.append(m), cache)
    assert not any("decoding" in n for n in notes) and torch.equal(again.train.images, first.train.images)
    shutil.copy(root / "train" / "a" / "0.png", root / "train" / "b" / "9.png")
    changed = load_image_folder(root, 32, lambda k, m: notes.append(m), cache)
    assert any("decoding" in n for n in notes) and len(changed.train) == 6


def test_image_folder_converts_modes_and_sizes_and_skips_non_images(tmp_path: Path) -> None:
    from PIL import Image

    root = make_folder(tmp_path / "imgs", {"a": 1, "b": 1}, size=32)
    Image.new("L", (50, 20), 128).save(root / "train" / "a" / "gray.png")
    Image.new("RGBA", (64, 64), (255, 0, 0, 10)).save(root / "train" / "b" / "rgba.png")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    warnings: list[str] = []
    data = load_image_folder(root, 32, lambda k, m: warnings.append(m) if k == "warning" else None, tmp_path / "c")
    assert data.train.images.shape == (4, 3, 32, 32)
    assert any("skipped 1 non-image" in w for w in warnings)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("no_train", "has no train/ folder"),
        ("no_test", "has no test/ or val/ folder"),
        ("empty_class", "holds no images"),
        ("missing_in_test", "is in train/ but not in test/"),
        ("corrupt", "cannot read image"),
    ],
)
def test_bad_image_folders_fail_clearly(tmp_path: Path, layout: str, message: str) -> None:
    root = make_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    if layout == "no_train":
        shutil.rmtree(root / "train")
    elif layout == "no_test":
        shutil.rmtree(root / "test")
    elif layout == "empty_class":
        (root / "train" / "c").mkdir()
        (root / "test" / "c").mkdir()
    elif layout == "missing_in_test":
        shutil.rmtree(root / "test" / "b")
    elif layout == "corrupt":
        (root / "train" / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=message):
        load_image_folder(root, 32, no_notes, tmp_path / "cache")


def write_fake_cifar10(root: Path, per_batch: int = 20) -> None:
    """CIFAR-10's on-disk python format, as torchvision's own tests build it."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(name: str) -> None:
        data = {
            "data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(data, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}")
    batch("test_batch")
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)


def test_cifar10_uses_torchvision_dataset_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_cifar10(tmp_path / "data")
    # Our files are not the published ones: skip the md5 checks, as torchvision's tests do.
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    bundle = load_cifar10(tmp_path / "data", no_notes)
    assert len(bundle.train) == 100 and len(bundle.test) == 20
    assert bundle.class_names == CIFAR10_CLASSES
    assert bundle.train.images.shape == (100, 3, 32, 32) and bundle.train.images.dtype == torch.uint8


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_cifar10_download_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    with pytest.raises(DownloadError) as info:
        load_cifar10(tmp_path / "data", no_notes)
    message = str(info.value)
    assert "could not download CIFAR-10" in message and "--data demo" in message and "--data PATH" in message
    assert "\n" not in message


def test_imagenet_weights_download_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    rec = Recorder()
    with pytest.raises(DownloadError, match=r"ImageNet weights.*--weights none.*--weights PATH"):
        Trainer(tiny_config(tmp_path, weights="imagenet"), rec).run()
    assert rec.of(ev.Failed)[0].error == "download"
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_local_weights_file_is_loaded(tmp_path: Path, recorder: Recorder) -> None:
    model = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(model.layer1[0].conv1.weight, 0.125)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    from engine.run.config import from_recipe
    from engine.train.models import build_model

    cfg = from_recipe("tutorial", weights=str(tmp_path / "w.pt"), data="demo")
    built = build_model(cfg, 7, lambda k, m: None)
    assert torch.all(built.layer1[0].conv1.weight == 0.125)
    assert built.fc.out_features == 7


def test_a_limited_run_decodes_only_the_images_it_uses(mini_data: Path, tmp_path: Path) -> None:
    full = load_image_folder(mini_data, 32, lambda k, m: None, tmp_path / "c1")
    notes: list[str] = []
    limited = load_image_folder(
        mini_data, 32, lambda k, m: notes.append(m), tmp_path / "c2", limits=((100, 0), (50, 1))
    )
    assert len(limited.train) == 100 and len(limited.test) == 50
    assert any(n.startswith("decoding 150 images") for n in notes)
    for got, whole, seed in ((limited.train, full.train, 0), (limited.test, full.test, 1)):
        expected = whole.subset(len(got), seed)  # the very images a full decode then --train-limit keeps
        assert torch.equal(got.images, expected.images) and torch.equal(got.labels, expected.labels)


def test_decoding_progress_says_count_rate_and_eta() -> None:
    from engine.run.wording import CountProgress

    notes: list[str] = []
    progress = CountProgress("decoding", "images", 60_000, notes.append, every_s=0.0)
    progress.step(12_000)
    message = notes[-1]
    assert message.startswith("decoding 12,000/60,000 images, ") and "/s, ETA " in message
