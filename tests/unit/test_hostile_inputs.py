"""A hostile-input sweep, kept: every bad value of every option, subcommand and file the tool
reads gets one line ``cifar-tui: error: ...``, exit 2, and nothing on disk changes.

In-process (``tui.cli.main``) so the whole table takes seconds; the real-process paths of the
same checks are in test_cli.py and test_field_reliability.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from engine.run.config import TrainConfig
from engine.train.checkpoint import FORMAT
from tui.cli import main

LONG = "x" * 300  # one path component longer than any file system takes
TRAIN = ["--headless", "--data", "demo", "--device", "cpu"]


def _checkpoint(folder: Path, **changes: object) -> str:
    """A small checkpoint of cifar-tui's format with ``changes`` made to its fields."""
    blob: dict[str, object] = {"format": FORMAT, "model": {"w": torch.zeros(2)}, "optimizer": {}, "scheduler": {},
                               "epoch": 1, "step": 0, "global_step": 10, "config": TrainConfig().to_dict(),
                               "class_names": ["a", "b"]}  # fmt: skip
    blob.update(changes)
    path = folder / "bad.pt"
    torch.save(blob, path)
    return str(path)


RUN_COMMANDS = ("stop", "pause", "resume", "save", "evaluate", "label", "archive", "delete")

# (arguments, a piece of the one-line error); "{tmp}" is a fresh folder, "{ckpt:...}" a checkpoint.
CASES: list[tuple[list[str], str]] = [
    # training options at and past their edges
    ([*TRAIN, "--batch-size", "1"], "BatchNorm"),
    ([*TRAIN, "--batch-size", "0"], "--batch-size"),
    ([*TRAIN, "--train-limit", "1"], "--train-limit"),
    ([*TRAIN, "--train-limit", "-5"], "--train-limit"),
    ([*TRAIN, "--seed", str(2**32)], "--seed"),
    ([*TRAIN, "--seed", "-1"], "--seed"),
    ([*TRAIN, "--seed", "1e3"], "--seed"),
    ([*TRAIN, "--epochs", "0"], "--epochs"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--lr", "inf"], "--lr"),
    ([*TRAIN, "--lr", "0"], "--lr"),
    ([*TRAIN, "--momentum", "1"], "--momentum"),
    ([*TRAIN, "--image-size", "4"], "--image-size"),
    ([*TRAIN, "--workers", "-1"], "--workers"),
    ([*TRAIN, "--keep", "0"], "--keep"),
    ([*TRAIN, "--eval-every", "-1"], "--eval-every"),
    ([*TRAIN, "--save-wait", "-1"], "--save-wait"),
    ([*TRAIN, "--progress-hz", "0"], "--progress-hz"),
    ([*TRAIN, "--optimizer", "lion"], "optimizer"),
    ([*TRAIN, "--schedule", "exp"], "schedule"),
    ([*TRAIN, "--arch", "resnet9000"], "arch"),
    ([*TRAIN, "--device", "tpu"], "device"),
    ([*TRAIN, "--recipe", "fastest"], "recipe"),
    ([*TRAIN, "--nproc", "0"], "--nproc"),
    ([*TRAIN, "--nproc", "two"], "--nproc"),
    ([*TRAIN, "--max-restarts", "-1"], "--max-restarts"),
    ([*TRAIN, "--refresh", "0"], "--refresh"),
    ([*TRAIN, "--amp", "maybe"], "on/off"),
    # paths the system refuses, in every place a path is taken
    ([*TRAIN, "--run-dir", "{tmp}/" + LONG], "File name too long"),
    ([*TRAIN, "--runs-root", "{tmp}/" + LONG], "File name too long"),
    (["--headless", "--data", "{tmp}/" + LONG], "File name too long"),
    ([*TRAIN, "--weights", "{tmp}/" + LONG], "File name too long"),
    ([*TRAIN, "--resume", "{tmp}/" + LONG], "File name too long"),
    ([*TRAIN, "--data-dir", "{tmp}/" + LONG], "File name too long"),
    (["runs", "--runs-root", "{tmp}/" + LONG], "File name too long"),
    (["runs", "--json", "--runs-root", "{tmp}/" + LONG], "File name too long"),
    (["attach", "{tmp}/" + LONG], "File name too long"),
    (["attach", "--runs-root", "{tmp}/" + LONG], "File name too long"),
    (["export", "{tmp}/" + LONG, "--csv"], "File name too long"),
    (["export", "{tmp}", "--csv", "--out", "{tmp}/" + LONG], "File name too long"),
    (["export", "{tmp}", "--tensorboard", "{tmp}/" + LONG], "File name too long"),
    (["serve", "{tmp}/" + LONG], "File name too long"),
    (["serve", "--runs-root", "{tmp}/" + LONG], "File name too long"),
    # paths that are not what they should be
    ([*TRAIN, "--resume", "{tmp}/missing.pt"], "no such checkpoint"),
    (["--headless", "--data", "{tmp}/missing"], "--data"),
    (["attach", "{tmp}"], "holds no run"),
    (["export", "{tmp}", "--csv"], "holds no run"),
    (["serve", "{tmp}", "--port", "0"], "--port"),
    # the run commands: no run, a folder that holds none, a path refused, a bad label
    *[([cmd, "{tmp}"], "holds no run") for cmd in RUN_COMMANDS],
    (["stop", "{tmp}/" + LONG], "File name too long"),
    (["pause"], "no live run"),
    (["evaluate", "--timeout", "-1"], "--timeout"),
    (["steer", "{tmp}", "--epochs", "5"], "holds no run"),
    (["steer"], "say what to change"),
    (["sweep", "s", "--space", "lr=log:0..1"], "LOW > 0 on a log scale"),
    (["sweep", "s", "--space", "lr=log:0.1..1", "--storage", "sqlite:////nonexistent/x.db"], "cannot open the study"),
    (["sweep", "s", "--status"], "no sweep in"),
    (["sweep", "s", "--watch"], "no sweep in"),
    (["sweep", "s", "--space", "lr=log:0.1..1", "--parallel", "-1"], "must be at least 1"),
    (["steer", "--lr-scale", "0"], "LR multiplier must be between"),
    (["steer", "--epochs", "ten"], "must be a whole number"),
    (["steer", "--early-stop", "wait=3"], "early stop"),
    (["steer", "--target-accuracy", "150"], "between 0 and 100%"),
    (["steer", "--target-accuracy", ""], "target accuracy needs a value"),
    (["steer", "--early-stop", ""], "early stop needs a value"),
    (["steer", "--lr-scale", ""], "LR multiplier"),
    ([*TRAIN, "--target-accuracy", ""], "target accuracy needs a value"),
    ([*TRAIN, "--early-stop", " "], "early stop needs a value"),
    (["stop", ""], "name cannot be empty"),
    # control characters, in any string an option or argument takes
    (["--headless", "--data", "demo", "--device", "cpu\n"], "--device 'cpu\\n' holds a control character"),
    ([*TRAIN, "--arch", "resnet18\t"], "--arch"),
    ([*TRAIN, "--name", "\x1b[31mred"], "control character"),
    (["runs", "--runs-root", "a\nb"], "--runs-root"),
    (["attach", "run\x1b"], "control character"),
    (["steer", "run\r", "--lr-scale", "2"], "control character"),
    (["label", "x", "--notes", "bell\x07"], "--notes"),
    (["steer", "", "--lr-scale", "2"], "name cannot be empty"),
    ([*TRAIN, "--early-stop", "patience=x"], "early stop"),
    ([*TRAIN, "--lr-find", "always"], "--lr-find"),
    ([*TRAIN, "--lr-find", "--nproc", "2"], "--lr-find runs in one process"),
    (["lr-find", "--nproc", "2", "--data", "demo"], "lr-find runs in one process"),
    (["lr-find", "--epochs", "0"], "--epochs"),
    ([*TRAIN, "--target-accuracy", "1e9"], "target accuracy"),
    (["label"], "name the run"),
    (["archive"], "name the run"),
    (["delete"], "name the run"),
    (["label", "no-such-run", "--tags", "a b"], "no run called"),
    ([*TRAIN, "--name", "x" * 81], "--name"),
    ([*TRAIN, "--name", "tab\there"], "--name"),
    ([*TRAIN, "--tags", "a,b/" + "c" * 50], "--tags"),
    ([*TRAIN, "--notes", "n" * 2001], "--notes"),
    # subcommands and options that do not exist
    (["atach"], "did you mean"),
    (["runs", "--bogus"], "unrecognized arguments"),
    (["runs", "--state", "sleeping"], "invalid choice"),
    (["export", "{tmp}"], "say what to write"),
    # checkpoints with fields of the wrong type, out of range, or not finite
    ([*TRAIN, "--resume", "{ckpt:config=list}"], "config is a list"),
    ([*TRAIN, "--resume", "{ckpt:epoch=str}"], "epoch is '1'"),
    ([*TRAIN, "--resume", "{ckpt:model=tensor}"], "model is a Tensor"),
    ([*TRAIN, "--resume", "{ckpt:class_names=int}"], "class_names is int"),
    ([*TRAIN, "--resume", "{ckpt:step=negative}"], "step is -1"),
    ([*TRAIN, "--resume", "{ckpt:step=past}"], "out of range"),
    ([*TRAIN, "--resume", "{ckpt:model=nan}"], "not finite"),
    ([*TRAIN, "--resume", "{ckpt:format=other}"], "not a cifar-tui checkpoint"),
]

CHECKPOINT_CHANGES: dict[str, dict[str, object]] = {
    "config=list": {"config": [1, 2]},
    "epoch=str": {"epoch": "1"},
    "model=tensor": {"model": torch.zeros(3)},
    "class_names=int": {"class_names": 7},
    "step=negative": {"step": -1},
    "step=past": {"step": 50, "global_step": 10},
    "model=nan": {"model": {"w": torch.tensor([1.0, math.nan])}},
    "format=other": {"format": "someone-else/3"},
}


def _expand(arg: str, tmp: Path) -> str:
    if arg.startswith("{ckpt:"):
        return _checkpoint(tmp, **CHECKPOINT_CHANGES[arg[len("{ckpt:") : -1]])
    return arg.replace("{tmp}", str(tmp))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # a default runs/ would appear here
    argv = [_expand(a, tmp_path) for a in args]
    before = _tree(tmp_path)
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifar-tui: error: "), err
    assert expected in lines[0], lines[0]
    assert _tree(tmp_path) == before and not (work / "runs").exists()


def test_the_sweep_covers_every_subcommand() -> None:
    from tui.cli import SUBCOMMANDS

    covered = {args[0] for args, _ in CASES}
    assert set(SUBCOMMANDS) <= covered
