"""The learning-rate finder: a range test that leaves the run exactly as it was, its record and
suggestion (headless, in the run directory, on the dashboard), and training at the suggestion."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.run import events as ev
from engine.run.rundir import read_events
from engine.train.checkpoint import load_checkpoint, rng_state
from engine.train.loop_parts import LoopParts
from engine.train.lr_find import range_test
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, screen_text, tiny_config
from tests.helpers.waiting import app_until, wait_until
from tui.app import make_app
from tui.cli import main
from tui.screens.lr_find import LrFindScreen


class FixedBatches:
    """Eight fixed batches an epoch (the test may take several epochs)."""

    steps_per_epoch = 8

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.data = [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,), generator=g))
                     for _ in range(8)]  # fmt: skip

    def batches(self, epoch: int, start_step: int = 0):  # type: ignore[no-untyped-def]
        yield from self.data[start_step:]


def small_parts() -> LoopParts:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / 100)
    src = FixedBatches()
    for x, y in src.batches(0):  # a run under way: momentum buffers and BatchNorm statistics that are not fresh
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        scheduler.step()
    return LoopParts(model, model, model, optimizer, scheduler, src, None, None, torch.device("cpu"), None)  # type: ignore[arg-type]


def test_the_range_test_puts_back_weights_statistics_optimizer_schedule_and_rng_bit_for_bit() -> None:
    parts = small_parts()
    before = ({k: v.clone() for k, v in parts.model.state_dict().items()}, str(parts.optimizer.state_dict()),
              [g["lr"] for g in parts.optimizer.param_groups], parts.scheduler.state_dict(), rng_state())  # fmt: skip
    momentum = [parts.optimizer.state[p]["momentum_buffer"].clone() for p in parts.model.parameters()]
    test = range_test(parts, steps=30)
    assert len(test.lrs) > 10 and test.lrs[0] == pytest.approx(1e-7)
    after = parts.model.state_dict()
    assert all(torch.equal(before[0][k], after[k]) for k in after)  # BatchNorm running stats and counts too
    assert str(parts.optimizer.state_dict()) == before[1]
    assert [g["lr"] for g in parts.optimizer.param_groups] == before[2]
    assert all(torch.equal(m, parts.optimizer.state[p]["momentum_buffer"])
               for m, p in zip(momentum, parts.model.parameters(), strict=True))  # fmt: skip
    assert parts.scheduler.state_dict() == before[3]
    assert torch.equal(rng_state()["torch"], before[4]["torch"])


def test_a_range_test_that_diverges_at_once_suggests_nothing() -> None:
    test = range_test(small_parts(), start=1e3, end=1e8, steps=30)
    assert test.suggestion is None and len(test.lrs) < 30  # stopped at the first non-finite loss or the cliff


def test_a_range_test_stopped_part_way_is_marked_interrupted_and_suggests_nothing() -> None:
    asked = iter([False] * 12 + [True] * 100)
    test = range_test(small_parts(), steps=50, should_stop=lambda: next(asked))
    assert test.interrupted and len(test.lrs) == 12 and test.suggestion is None


def test_an_interrupted_lr_find_command_says_so_and_marks_its_record_partial(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    run = tmp_path / "find"
    # A range that never diverges and more steps than it will get: only the signal ends it.
    args = ["--data", "demo", "--device", "cpu", "--train-limit", "256", "--test-limit", "50", "--batch-size", "32",
            "--loader", "tensor", "--lr-find-start", "1e-9", "--lr-find-end", "1e-8", "--lr-find-steps", "100000",
            "--run-dir", str(run)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "lr-find", *args], cwd=tmp_path, env=project_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_until(lambda: any(isinstance(e, ev.Status) and e.state == "finding_lr" for e in read_events(run)), 120,
                   "the range test to start")  # fmt: skip
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "lr-find interrupted after " in out and " of 100000 steps: a partial record, no suggestion" in out
    assert "suggested lr" not in out and "completed" not in out.splitlines()[-1]
    record = json.loads((run / "lr_find.json").read_text())
    assert record["interrupted"] is True and record["valley"] is None
    finished = [e for e in read_events(run) if isinstance(e, ev.Finished)]
    assert [f.reason for f in finished] == ["stopped"]


def test_the_finders_range_is_checked_like_any_option(capsys: pytest.CaptureFixture[str]) -> None:
    for bad, said in ((["--lr-find-start", "0"], "--lr-find-start must be > 0"),
                      (["--lr-find-end", "1e-8"], "must be above --lr-find-start"),
                      (["--lr-find-steps", "1"], "--lr-find-steps must be >= 2")):  # fmt: skip
        assert main(["lr-find", "--data", "demo", *bad]) == 2
        assert said in capsys.readouterr().err, bad


def test_a_run_after_the_finder_is_the_run_asked_for(tmp_path: Path) -> None:
    rec = Recorder()
    with_finder = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), schedule="cosine", lr_find="show",
                                      lr_find_steps=30),
                          rec).run()  # fmt: skip
    plain = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "b"), schedule="cosine"), Recorder()).run()
    assert with_finder.test_accuracy == plain.test_accuracy
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    found = rec.of(ev.LrFound)[0]
    record = json.loads((tmp_path / "a" / "lr_find.json").read_text())
    assert record["lrs"] == found.lrs and record["valley"] == found.valley and not found.asks


def test_lr_find_use_trains_at_the_suggestion_from_the_first_step(tmp_path: Path) -> None:
    rec = Recorder()
    Trainer(tiny_config(tmp_path, lr_find="use", lr_find_steps=40), rec).run()
    found, steered = rec.of(ev.LrFound)[0], rec.of(ev.Steered)[0]
    assert found.valley is not None
    assert (steered.global_step, steered.what, steered.source) == (0, "lr_scale", "lr finder")
    assert rec.of(ev.Progress)[0].lr == pytest.approx(found.valley)  # the tutorial's constant schedule


def test_the_lr_find_command_prints_the_table_and_the_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--data", "demo", "--device", "cpu", "--train-limit", "256", "--test-limit", "50", "--batch-size", "32",
            "--loader", "tensor", "--lr-find-steps", "40", "--run-dir", str(tmp_path / "find")]  # fmt: skip
    assert main(["lr-find", *args]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("lr-find: ") and line.split()[1].isdigit()]
    assert len(rows) >= 20 and rows[0].split()[1:3] == ["1", "1.000e-07"]
    assert "lr-find: suggested lr" in out and "to train at the suggestion: --lr" in out
    assert "completed (learning-rate range test only)" in out
    events = read_events(tmp_path / "find")
    assert not any(isinstance(e, ev.Progress) for e in events)  # the test only: no training
    assert main(["lr-find", *args[:-2], "--nproc", "2"]) == 2


async def test_the_dashboard_offers_the_suggestion_and_trains_at_it(tmp_path: Path) -> None:
    app = make_app(tiny_config(tmp_path, epochs=2, lr_find="ask", lr_find_steps=40, progress_hz=20.0), refresh_hz=4.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: isinstance(app.screen, LrFindScreen), 120)
        await app_until(pilot, lambda: app.run_state.state == "paused")  # it waits for the answer...
        assert app.run_state.global_step == 0  # ...before its first step
        await app_until(pilot, lambda: "valley" in screen_text(app) and "Use " in screen_text(app))
        await pilot.click("#use")
        await app_until(pilot, lambda: app.run_state.finished is not None, 120)
        found = app.run_state.lr_found
        assert found is not None and found.valley is not None
        assert app.run_state.lr_scale == pytest.approx(found.valley / found.lr, rel=5e-3)  # shown in 3 digits
        first = app.run_state.steered[0]
        assert (first.global_step, first.source) == (0, "dashboard")
        await pilot.press("q")
        await app_until(pilot, lambda: not app.is_running, 30)
