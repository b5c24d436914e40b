"""The real command: bad input gives one clear line and exit code 2; good input trains headless."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.run.config import from_recipe
from tests.helpers.common import ROOT
from tui.cli import main

TINY = ["--headless", "--data", "demo", "--weights", "none", "--train-limit", "128", "--test-limit", "64",
        "--batch-size", "32", "--device", "cpu", "--loader", "tensor"]  # fmt: skip


class Evil:
    """Unpickling this would run code: create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "done"
    assert main([*TINY, "--epochs", "1", "--run-dir", str(run)]) == 0
    return run


def bad_inputs(tmp: Path, finished: Path) -> list[tuple[list[str], str]]:
    (tmp / "empty").mkdir()
    (tmp / "notrain" / "test" / "a").mkdir(parents=True)
    (tmp / "corrupt.pt").write_bytes(os.urandom(2048))
    good = finished / "checkpoints" / "last.pt"
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    torch.save({"model": {}, "note": Evil(tmp / "pwned")}, tmp / "evil.pt")
    for cls in ("a", "b", "c"):
        for split in ("train", "test"):
            d = tmp / "three" / split / cls
            d.mkdir(parents=True)
            shutil.copy(next((ROOT.parent / "shared/data/cifar10-mini/train/cat").glob("*.jpg")), d / "x.jpg")
    cat = next((ROOT.parent / "shared/data/cifar10-mini/train/cat").glob("*.jpg"))
    for name, files in {"zero": {}, "corrupt": {"a": b"\xff\xd8\xff garbage"}, "partial": {}}.items():
        for cls in ("a", "b"):
            for split in ("train", "test"):
                (tmp / name / split / cls).mkdir(parents=True, exist_ok=True)
                if name != "zero":
                    shutil.copy(cat, tmp / name / split / cls / "ok.jpg")
        for cls, data in files.items():
            (tmp / name / "train" / cls / "broken.jpg").write_bytes(data)
    shutil.rmtree(tmp / "partial" / "test" / "b")
    (tmp / "afile").write_text("x")
    return [
        (["--data", "nowhere"], "is neither cifar10 nor demo nor an existing folder"),
        (["--data", str(tmp / "zero")], "holds no images"),
        (["--data", str(tmp / "corrupt")], "cannot read image"),
        (["--data", str(tmp / "partial")], "class folder 'b' is in train/ but not in test/"),
        (["--run-dir", str(tmp / "afile")], "exists and is not a folder"),
        (["--data", str(tmp / "empty")], "has no train/ folder"),
        (["--data", str(tmp / "notrain")], "has no train/ folder"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--epochs", "-3"], "--epochs must be >= 1"),
        (["--epochs", "abc"], "invalid int value"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--batch-size", "10000000"], "--batch-size must be >= 1 and <= 65536"),
        (["--lr", "0"], "--lr must be > 0.0"),
        (["--lr", "-0.1"], "--lr must be > 0.0"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--momentum", "1.5"], "--momentum must be"),
        (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
        (["--arch", "resnet9000"], "unknown or unsupported arch"),
        (["--recipe", "fastest"], "unknown recipe"),
        (["--optimizer", "lbfgs"], "unknown optimizer"),
        (["--device", "tpu"], "unknown device"),
        (["--device", "cuda:4096"], "--device cuda:4096: "),  # no such GPU, with or without a GPU here
        (["--weights", str(tmp / "nope.pt")], "--weights: no such file"),
        (["--resume", str(tmp / "nope.pt")], "--resume: no such checkpoint file"),
        (["--resume", str(tmp / "corrupt.pt")], "corrupt or truncated"),
        (["--resume", str(truncated), "--epochs", "2"], "corrupt or truncated"),
        (["--resume", str(tmp / "evil.pt")], "refused to load"),
        (["--resume", str(good), "--epochs", "2", "--data", str(tmp / "three"), "--run-dir", str(tmp / "r3")],
         "--data cannot change"),
        (["--run-dir", str(finished)], "already holds a run"),
    ]  # fmt: skip


def test_bad_inputs_give_one_line_and_exit_2(
    tmp_path: Path,
    finished_run: Path,
    capsys: pytest.CaptureFixture[str],
    mini_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # default run directories would appear under ./runs
    before = {p: p.stat().st_mtime_ns for p in finished_run.rglob("*")}
    for extra, expected in bad_inputs(tmp_path, finished_run):
        code, out, err = run_main([*TINY, *extra], capsys)
        lines = err.strip().splitlines()
        assert code == 2, (extra, err)
        assert len(lines) == 1 and expected in lines[0], (extra, err)
        assert "Traceback" not in out + err
    assert not (tmp_path / "pwned").exists()  # the hostile checkpoint ran nothing
    assert before == {p: p.stat().st_mtime_ns for p in finished_run.rglob("*")}  # existing run untouched
    assert not (tmp_path / "runs").exists()  # no half-made run directories


def test_checkpoint_for_other_classes_is_refused(
    tmp_path: Path, finished_run: Path, mini_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = finished_run / "checkpoints" / "last.pt"
    # A checkpoint made on a 3-class version of the data (e.g. a folder that has since changed).
    blob = torch.load(ckpt, weights_only=True)
    blob["class_names"] = ["a", "b", "c"]
    torch.save(blob, tmp_path / "three.pt")
    code, _, err = run_main(
        [*TINY, "--epochs", "2", "--resume", str(tmp_path / "three.pt"), "--run-dir", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "was trained on 3 classes" in err and "the data has 10" in err


def test_headless_run_prints_plain_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main([*TINY, "--epochs", "2", "--log-every", "2", "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 0
    assert "\r" not in out
    assert "[1,     2] loss:" in out  # the tutorial's own per-batch format
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "test loss" in epoch_lines[0] and "img/s" in epoch_lines[0]
    assert "per-class test accuracy:" in out and "triangle" in out


def test_real_command_in_a_subprocess(tmp_path: Path, project_env: dict[str, str]) -> None:
    ok = subprocess.run([sys.executable, "-m", "tui.cli", *TINY, "--epochs", "1", "--run-dir", str(tmp_path / "r")],
                        capture_output=True, text=True, env=project_env, cwd=tmp_path, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "completed: 1 epoch," in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "tui.cli", "--headless", "--data", "demo", "--lr", "-1"],
                         capture_output=True, text=True, env=project_env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip() == "cifar-tui: error: --lr must be > 0.0 and <= 100.0, got -1.0"


def test_help_shows_each_options_value_under_the_recipe_and_the_whole_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import re

    def help_text(*argv: str) -> str:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        return re.sub(r"\s+", " ", capsys.readouterr().out)

    text = help_text()
    for shown in ("--epochs EPOCHS (default: 10)", "(default: 64)", "peak learning rate (default: 0.001)",
                  "file (default: imagenet)", "cifar-tui attach", "cifar-tui runs", "cifar-tui export",
                  "p pause/resume", "? help", "129 terminal lost", "examples:"):  # fmt: skip
        assert shown in text, shown
    fast = help_text("--recipe", "fast")
    assert "--epochs EPOCHS (default: 26)" in fast and "--zero-init-residual on|off" in fast


def test_a_misspelt_command_suggests_the_right_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'cifar-tui runs'?" in err


def test_the_engines_command_describes_only_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main as engine_main

    with pytest.raises(SystemExit):
        engine_main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m engine") and "--detach" not in out and "--refresh" not in out
    with pytest.raises(SystemExit) as done:
        engine_main(["--detach"])  # never silently run in the foreground
    assert done.value.code == 2


def test_demo_data_implies_no_pretrained_weights_unless_asked() -> None:
    assert from_recipe("tutorial", data="demo").weights == "none"  # the quickstart trains offline at once
    assert from_recipe("tutorial", data="demo", weights="imagenet").weights == "imagenet"
    assert from_recipe("tutorial").weights == "imagenet"  # the tutorial's recipe, value for value
