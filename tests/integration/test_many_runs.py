"""A practitioner's day of many runs: found from any folder, named, filtered, handled without a
dashboard (stop, pause, resume, save, evaluate), archived and deleted; never a live one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient, trainer_alive
from engine.run.controls import Command
from engine.run.index import index_path, indexed
from engine.run.label import read_label
from engine.run.rundir import read_events
from engine.run.summary import RunSummary
from engine.run.wording import distinct
from engine.train.trainer import Trainer
from tests.helpers.common import ROOT, Recorder, tiny_config
from tests.helpers.waiting import wait_until
from tui import run_commands
from tui.cli import main
from tui.launcher import detach_training


def finished_run(runs_root: Path, **overrides: object) -> Path:
    cfg = tiny_config(runs_root, run_dir="", runs_root=str(runs_root), **overrides)
    Trainer(cfg, Recorder()).run()
    return Path(indexed()[-1])


def test_runs_started_in_one_folder_are_listed_from_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    project = tmp_path / "project"
    monkeypatch.chdir(tmp_path)
    a = finished_run(project / "runs", name="baseline", tags="cpu,tiny", notes="first try")
    b = finished_run(project / "runs", lr=0.05)
    assert a.parent == project / "runs" and {a, b} <= {p.resolve() for p in indexed()}
    assert index_path().is_relative_to(os.environ["XDG_STATE_HOME"])  # the suite never writes the user's index
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)  # an SSH reconnect lands here: no ./runs
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "#cpu #tiny" in out and b.name[-20:] in out
    assert main(["runs", "--match", "tiny"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1 and "baseline" in rows[0]
    assert main(["runs", "--sort", "name", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["title"] for r in listed] == sorted([r["title"] for r in listed], key=str.lower)
    assert listed[[r["title"] for r in listed].index("baseline")]["notes"] == "first try"

    # Named on the command line by its label: relabel, archive (hidden, then shown with --all), delete.
    assert main(["label", "baseline", "--add-tags", "keep", "--notes", "the reference"]) == 0
    assert read_label(a).tags == ["cpu", "tiny", "keep"] and read_label(a).notes == "the reference"
    assert main(["archive", "baseline"]) == 0
    capsys.readouterr()
    assert main(["runs"]) == 0 and "baseline" not in capsys.readouterr().out
    assert main(["runs", "--all"]) == 0 and "[archived]" in capsys.readouterr().out
    assert main(["delete", b.name, "--yes"]) == 0 and not b.exists()
    assert b.resolve() not in indexed()
    assert main(["delete", "no-such-run", "--yes"]) == 2
    assert "no run called 'no-such-run'" in capsys.readouterr().err


def test_names_are_cut_where_runs_do_not_differ() -> None:
    names = ["20261201-021530-tutorial-demo-lr0.1-long", "20261201-021530-tutorial-demo-lr0.2-long"]
    assert distinct(names, 20) == ["…lr0.1-long", "…lr0.2-long"]
    shown = distinct(["20261201-021530-tutorial-cifar10", "20261201-021544-tutorial-cifar10"], 20)
    assert len(set(shown)) == 2 and all(len(s) <= 20 for s in shown)
    assert distinct(["short", "names"], 20) == ["short", "names"]


def test_a_detached_run_is_handled_from_another_folder_without_attaching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "project" / "runs" / "long"
    assert detach_training(tiny_config(tmp_path, epochs=500, progress_hz=20.0, run_dir=str(run), name="long one")) == 0
    pid = json.loads((run / TRAINER_FILE).read_text())["pid"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    try:
        wait_until(lambda: any(isinstance(e, ev.Progress) for e in read_events(run)), 60, "training to start")
        assert main(["pause"]) == 0  # no name: the one live run
        assert "paused at step" in capsys.readouterr().out
        assert main(["pause", "long one"]) == 0 and "long one: already paused" in capsys.readouterr().out
        assert main(["save", "long"]) == 0 and "checkpoint saved (request)" in capsys.readouterr().out
        assert main(["evaluate", "long"]) == 0 and "evaluation at epoch" in capsys.readouterr().out
        assert main(["resume", "long"]) == 0 and "resumed at step" in capsys.readouterr().out
        # Another client pauses the run just after this command read its state ("running"): the
        # command's pause reaches a paused trainer, which answers nothing; the Paused it waits for
        # is the other's, and it must not miss it (it waited its whole --timeout and failed).
        real_summary = run_commands.safe_summary

        def then_another_pauses(run_dir: Path) -> RunSummary | None:
            seen = real_summary(run_dir)
            pauses = len([e for e in read_events(run) if isinstance(e, ev.Paused)])
            client = ControlClient(Path(json.loads((run / TRAINER_FILE).read_text())["socket"]))
            assert client.send(Command.PAUSE)["ok"]
            client.close()
            wait_until(lambda: len([e for e in read_events(run) if isinstance(e, ev.Paused)]) > pauses, 60,
                       "the other client's pause")  # fmt: skip
            return seen

        monkeypatch.setattr(run_commands, "safe_summary", then_another_pauses)
        assert main(["pause", "long", "--timeout", "20"]) == 0 and "paused at step" in capsys.readouterr().out
        monkeypatch.setattr(run_commands, "safe_summary", real_summary)
        assert main(["resume", "long"]) == 0 and "resumed at step" in capsys.readouterr().out
        assert main(["delete", "long", "--yes"]) == 2 and "is live" in capsys.readouterr().err
        assert main(["archive", "long"]) == 2 and run.is_dir()
        assert main(["stop", "long"]) == 0
        out = capsys.readouterr().out
        assert "stopped (stopped from the command line)" in out and "checkpoint" in out
        wait_until(lambda: not trainer_alive(run), 30, "the trainer to exit")
        assert main(["stop"]) == 2 and "no live run" in capsys.readouterr().err
        assert main(["stop", "long"]) == 2 and "is not running (stopped)" in capsys.readouterr().err
    finally:
        if trainer_alive(run):
            os.kill(pid, signal.SIGKILL)


def test_run_commands_refuse_bad_input_in_one_line(tmp_path: Path, project_env: dict[str, str]) -> None:
    for args in (["stop"], ["pause", "nothing-here"], ["label"], ["delete"], ["resume", "--timeout", "0"]):
        done = subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=project_env, timeout=60)  # fmt: skip
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (args, done.stderr)
    assert ROOT.is_dir()


def test_an_indexed_run_moved_or_deleted_by_hand_is_skipped_and_found_where_it_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./runs here: only the index knows the runs
    gone = finished_run(tmp_path / "a" / "runs", name="deleted-by-hand")
    moved = finished_run(tmp_path / "b" / "runs", name="moved-by-hand")
    kept = finished_run(tmp_path / "c" / "runs", name="still-here")
    import shutil

    shutil.rmtree(gone)
    moved.rename(tmp_path / "b" / "runs" / "renamed")
    capsys.readouterr()
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "still-here" in out and "deleted-by-hand" not in out and "moved-by-hand" not in out
    assert main(["attach", "deleted-by-hand"]) == 2 and "no run called" in capsys.readouterr().err
    # Where it went is found by its path, or from that folder's ./runs.
    assert main(["runs", "--runs-root", str(tmp_path / "b" / "runs")]) == 0
    assert "moved-by-hand" in capsys.readouterr().out
    assert kept.is_dir()
