"""Odd path names and values a user can type: one line, exit 2 (or a warning), never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.common import ROOT

HEADLESS = [sys.executable, "-m", "tui.cli", "--headless", "--weights", "none", "--device", "cpu", "--epochs", "1",
            "--train-limit", "40", "--test-limit", "20", "--batch-size", "20"]  # fmt: skip


def run(*args: str | bytes, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*HEADLESS, *args], capture_output=True, cwd=cwd, timeout=600)


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "Traceback" not in err, err
    assert err.startswith("cifar-tui: error: ") and err.count("\n") == 1, err
    return err


def test_names_the_system_refuses_are_one_line_errors(tmp_path: Path) -> None:
    too_long = "x" * 5000
    assert "--data" in one_line_error(run("--data", too_long))
    assert "--run-dir" in one_line_error(run("--data", "demo", "--run-dir", str(tmp_path / ("r" * 300))))
    assert "--weights" in one_line_error(run("--data", "demo", "--weights", str(tmp_path / ("w" * 300) / "x.pt")))
    afile = tmp_path / "afile"
    afile.write_text("")
    assert "not a folder" in one_line_error(run("--data", "demo", "--run-dir", str(afile)))
    runs = subprocess.run([sys.executable, "-m", "tui.cli", "runs", "--runs-root", str(afile)], capture_output=True,
                          cwd=ROOT, timeout=60)  # fmt: skip
    assert "not a folder" in one_line_error(runs)


def test_folder_and_file_names_that_are_not_utf8(tmp_path: Path, mini_data: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(mini_data, data)
    first = sorted(os.listdir(data / "train"))[0]
    for split in ("train", "test"):
        os.rename(os.fsencode(data / split / first), os.fsencode(data / split) + b"/" + os.fsencode(first) + b"\xff")
    (
        Path(os.fsdecode(os.fsencode(data / "train") + b"/" + os.fsencode(first) + b"\xff")) / "notes\udcfe.txt"
    ).write_text("x")
    done = run("--data", str(data), "--run-dir", str(tmp_path / "run"))
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0 and "Traceback" not in err, err
    assert "skipped 1 non-image file" in out and "completed" in out
