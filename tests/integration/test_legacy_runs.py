"""A run directory and checkpoint written by the release before the restructuring (2026-11-30,
commit d814303: one epoch of mobilenet_v3_small on demo data) still list, attach, export and
resume. The fixture is in tests/fixtures/run-2026-11-30; each test works on a copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.config import from_recipe
from engine.run.rundir import read_events
from engine.session.attached import AttachedSession
from engine.train.trainer import Trainer
from tests.helpers.common import ROOT, Recorder, screen_text, tiny_config
from tests.helpers.waiting import app_until
from tui.app import make_app
from tui.cli import main

FIXTURE = ROOT / "tests" / "fixtures" / "run-2026-11-30"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "old"
    shutil.copytree(FIXTURE, run)
    return run


def test_the_runs_list_shows_it_finished_with_its_accuracy(old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--runs-root", str(old_run.parent), "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "old" and listed["state"] == "finished"
    assert listed["epochs_done"] == 1 and listed["best_accuracy"] is not None
    assert listed["config"]["arch"] == "mobilenet_v3_small"


def test_export_writes_its_metrics(old_run: Path, tmp_path: Path) -> None:
    assert main(["export", str(old_run), "--csv", "--out", str(tmp_path / "csv")]) == 0
    epochs = (tmp_path / "csv" / "epochs.csv").read_text().splitlines()
    assert len(epochs) == 2 and epochs[0].startswith("epoch")


async def test_attach_replays_it_to_the_end(old_run: Path, tmp_path: Path) -> None:
    final = next(e for e in reversed(read_events(old_run)) if isinstance(e, ev.Finished))
    app = make_app(tiny_config(tmp_path), lambda _cfg: AttachedSession(old_run), refresh_hz=4.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await app_until(pilot, lambda: "finished" in screen_text(app))
        await pilot.press("q")
    assert app.run_state.finished == final and app.return_code == 0


def test_it_resumes_for_a_second_epoch(old_run: Path) -> None:
    checkpoint = old_run / "checkpoints" / "last.pt"
    cfg = from_recipe("tutorial", resume=str(checkpoint), epochs=2, device="cpu")  # the rest is the checkpoint's
    recorder = Recorder()
    finished = Trainer(cfg, recorder).run()
    assert finished.reason == "completed" and finished.epochs_done == 2
    started = recorder.of(ev.RunStarted)[0]
    assert Path(started.run_dir) == old_run and started.start_epoch == 1  # the checkpoint's own run goes on
    assert sum(isinstance(e, ev.EpochEnd) for e in read_events(old_run)) == 2
