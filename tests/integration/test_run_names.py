"""Naming a run on the command line: a path is a path (never a run's name), an empty name is bad
input, a damaged index hides nothing, and replies and exports call a run by its name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run import wire
from engine.run.index import index_path, remember
from engine.run.label import Label, write_label
from engine.run.rundir import write_mark
from engine.run.summary import SummaryFold
from tests.helpers.scripted import script, tutorial_config
from tui.cli import main


def fake_run(folder: Path, name: str = "") -> Path:
    """A finished run as the trainer leaves it (events, summary, mark), named ``name``."""
    folder.mkdir(parents=True)
    write_mark(folder)
    events = script(tutorial_config(), 2, "finished")
    (folder / "events.jsonl").write_text("".join(wire.to_json_line(e) + "\n" for e in events))
    fold = SummaryFold()
    for event in events:
        fold.add(event)
    (folder / "summary.json").write_text(json.dumps(fold.to_dict()))
    if name:
        write_label(folder, Label(name=name))
    remember(folder)
    return folder


def test_a_path_never_matches_a_runs_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "runs" / "20261204-120000-etc", name="../../etc")
    assert main(["delete", "/etc", "--yes"]) == 2
    assert "/etc holds no run" in capsys.readouterr().err
    assert main(["archive", "/usr"]) == 2
    assert main(["delete", "../../etc", "--yes"]) == 2  # the name, typed as a path: still a path
    assert main(["archive", str(tmp_path / "nowhere")]) == 2 and "no run at" in capsys.readouterr().err
    assert run.is_dir() and "archived" not in (run / "label.json").read_text().replace('"archived": false', "")
    # By its folder name, or a path to it, it is found.
    assert (
        main(["archive", "20261204-120000-etc"]) == 0 and main(["archive", "--undo", "runs/20261204-120000-etc"]) == 0
    )


def test_an_empty_run_name_is_bad_input_never_the_live_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "one")
    for argv in (
        ["stop", ""],
        ["pause", " "],
        ["steer", "", "--lr-scale", "2"],
        ["attach", ""],
        ["export", "", "--csv"],
    ):
        assert main(argv) == 2, argv
        assert "cannot be empty" in capsys.readouterr().err, argv


def test_a_damaged_index_is_skipped_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    good = fake_run(tmp_path / "elsewhere" / "good")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a link to itself: resolving it is a loop
    with index_path().open("a") as index:
        index.write("[" * 100_000 + "\n")
        index.write(json.dumps({"path": str(loop)}) + "\n")
        index.write(json.dumps({"path": str(loop / "deeper")}) + "\n")
    assert main(["runs", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["good"]
    assert main(["stop"]) == 2 and "no live run" in capsys.readouterr().err  # no traceback: one line
    assert main(["delete", "good", "--yes"]) == 0 and not good.exists()  # and the index is rewritten clean
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


def test_replies_and_exports_call_a_run_by_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "20261204-130000-baseline", name="baseline")
    fake_run(tmp_path / "runs" / "20261204-140000-wide", name="wide lr")
    assert main(["export", "baseline", "wide lr", "--csv", "--out", str(tmp_path / "csv")]) == 0
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["baseline", "wide-lr"]


def test_what_a_killed_save_left_goes_when_the_run_is_next_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint write killed with SIGKILL leaves its temporary file (up to a checkpoint's size)
    in checkpoints/ (tests/integration/test_faults.py makes one); labelling or archiving the idle
    run removes it, as the next trainer to open the run does."""
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "runs" / "torn")
    (run / "checkpoints").mkdir()
    kept = run / "checkpoints" / "step-00000008.pt"
    kept.write_bytes(b"a checkpoint")
    torn = run / "checkpoints" / ".step-00000016.pt.k2j3h4.tmp"
    torn.write_bytes(b"x" * 1000)
    assert main(["label", "torn", "--notes", "tried lr 0.1"]) == 0
    assert not torn.exists() and kept.exists()
    torn.write_bytes(b"x" * 1000)
    assert main(["archive", "torn"]) == 0 and not torn.exists() and kept.exists()


def test_resume_takes_a_runs_name_and_a_stopped_run_points_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.options import resume_target

    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "runs" / "20261204-150000-tutorial-demo", name="baseline")
    assert main(["resume", "baseline"]) == 2  # the control command: the run is not running...
    assert "to train it on: cifar-tui --resume baseline" in capsys.readouterr().err  # ...and says how
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"stands in for a checkpoint")
    for given in ("baseline", "20261204-150000-tutorial-demo", str(run)):
        assert Path(resume_target(given)).resolve() == run / "checkpoints" / "last.pt", given
    assert resume_target(str(run / "checkpoints" / "last.pt")) == str(run / "checkpoints" / "last.pt")
    assert resume_target("no-such-run") == "no-such-run"  # the config's check says no such checkpoint


def test_runs_lists_by_best_with_unmeasured_runs_last_and_help_names_the_real_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.run.index import index_path

    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "measured")
    unmeasured = tmp_path / "runs" / "unmeasured"
    unmeasured.mkdir(parents=True)
    write_mark(unmeasured)
    started = script(tutorial_config(), 0)[:2]  # started, no epoch ended: no accuracy yet
    (unmeasured / "events.jsonl").write_text("".join(wire.to_json_line(e) + "\n" for e in started))
    for reverse in ([], ["--reverse"]):
        assert main(["runs", "--json", "--sort", "best", *reverse]) == 0
        assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["measured", "unmeasured"]
    with pytest.raises(SystemExit):
        main(["runs", "--help"])
    said = "".join(capsys.readouterr().out.split())  # (argparse wraps a long path anywhere)
    assert str(index_path()) in said and "~/.local/state" not in said


def test_a_resumed_runs_duration_leaves_out_the_time_it_lay_stopped() -> None:
    from engine.run.summary import SummaryFold

    cfg = tutorial_config()
    first = [e for e in script(cfg, 1) if not isinstance(e, ev.Status)]
    fold = SummaryFold()
    for event in first:  # trained for 100 s ...
        fold.add(event)
    fold.add(ev.Finished("stopped", 1, 782, 0.5, 0.5, 100.0, t=first[-1].t + 100))
    gap = 86_400.0  # ... then lay stopped for a day ...
    later = first[-1].t + 100 + gap
    for event in (first[0], ev.Finished("completed", 2, 1564, 0.6, 0.6, 50.0)):  # ... and trained 50 s more
        fold.add(replace(event, t=later) if isinstance(event, ev.RunStarted) else replace(event, t=later + 50))
    summary = fold.summary(Path("/nonexistent"))
    assert summary.duration is not None and abs(summary.duration - 150.0) < 1e-6


def test_a_run_named_exactly_is_found_without_reading_any_runs_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.run import catalog, summary
    from engine.run.catalog import resolve_run

    monkeypatch.chdir(tmp_path)
    runs = [fake_run(tmp_path / "runs" / f"20261204-16000{i}-tutorial-demo", name=f"trial {i}") for i in range(5)]

    def no_summaries(*_args: object) -> None:
        raise AssertionError("read a run's summary")

    monkeypatch.setattr(summary, "load_fold", no_summaries)
    monkeypatch.setattr(catalog, "find_runs", no_summaries)
    assert resolve_run("20261204-160003-tutorial-demo").resolve() == runs[3]
    assert resolve_run("trial 2").resolve() == runs[2]
    assert resolve_run(str(runs[4])) == runs[4]


def test_a_name_resolves_from_the_index_and_a_rename_or_a_hand_written_label_still_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --name is looked up in the index's record of the labels written here (no run's label read
    but the one named); a renamed run answers to its new name only; a label the index never saw
    (written by hand, a run copied in) is still found, by reading every label."""
    from engine.run import catalog
    from engine.run.catalog import NoSuchRun, resolve_run

    monkeypatch.chdir(tmp_path)
    runs = [fake_run(tmp_path / "runs" / f"20261207-10000{i}-tutorial-demo", name=f"lr {i}") for i in range(4)]
    write_label(runs[1], Label(name="baseline"))  # renamed, as `cifar-tui label` does
    (runs[3] / "label.json").write_text(json.dumps(Label(name="by hand").to_dict()))
    scans: list[object] = []
    scan = catalog._run_folders

    def counted_scan(*args: object) -> object:
        scans.append(args)
        return scan(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog, "_run_folders", counted_scan)
    assert resolve_run("lr 2").resolve() == runs[2] and resolve_run("baseline").resolve() == runs[1]
    assert resolve_run("lr 0", [tmp_path / "runs"]).resolve() == runs[0]
    assert scans == []  # every label but the named one left unread
    assert resolve_run("by hand").resolve() == runs[3] and len(scans) == 1  # found by the scan
    with pytest.raises(NoSuchRun):
        resolve_run("lr 1")  # its old name
    with pytest.raises(NoSuchRun):
        resolve_run("lr 2", [tmp_path / "elsewhere"])  # not under the runs folder asked for
