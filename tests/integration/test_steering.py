"""Steering a running training: LR multiplier, length and stop rules, applied at batch
boundaries, written as events, kept in checkpoints, and resumed exactly."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.headless import run_headless
from engine.run import events as ev
from engine.run import steering as st
from engine.run.control_socket import TRAINER_FILE, trainer_alive
from engine.run.controls import Controls
from engine.run.errors import ConfigError
from engine.run.rundir import read_events
from engine.run.summary import safe_summary
from engine.train.checkpoint import load_checkpoint
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config
from tests.helpers.waiting import wait_until
from tui.cli import main
from tui.launcher import detach_training

COSINE = {"schedule": "cosine", "warmup_epochs": 0.5}


def steered_at(controls: Controls, plan: dict[int, st.SteerAct], rec: Recorder,
               stop_at: int | None = None) -> Callable[[ev.Event], None]:  # fmt: skip
    """A sink that asks for ``plan``'s acts (and a saving stop) as given steps are reported:
    each is applied at the boundary right after that step."""

    def sink(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.Progress):
            if event.global_step in plan:
                controls.steer(plan[event.global_step])
            if event.global_step == stop_at:
                controls.stop(save=True)

    return sink


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_steering_then_stopping_and_resuming_gives_the_weights_of_the_same_steering_without_the_stop(
    tmp_path: Path,
) -> None:
    acts = {3: st.parse_lr_scale("0.5"), 6: st.parse_epochs("+1"), 14: st.parse_lr_scale("*3")}
    # Straight through: 2 epochs of 8 steps, extended to 3 at step 6.
    controls, rec = Controls(), Recorder()
    straight = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), epochs=2, **COSINE),
                       steered_at(controls, acts, rec), controls).run()  # fmt: skip
    assert straight.reason == "completed" and straight.epochs_done == 3 and straight.global_step == 24
    steered = rec.of(ev.Steered)
    assert [(e.global_step, e.what, e.old, e.new) for e in steered] == [
        (3, "lr_scale", 1.0, 0.5), (6, "epochs", 2.0, 3.0), (14, "lr_scale", 0.5, 1.5)]  # fmt: skip
    assert rec.of(ev.EpochEnd)[-1].epochs == 3
    # The same acts, with a stop at step 10 in between and a resume from its checkpoint.
    controls, rec = Controls(), Recorder()
    cut = tmp_path / "b"
    stopped = Trainer(tiny_config(tmp_path, run_dir=str(cut), epochs=2, **COSINE),
                      steered_at(controls, acts, rec, stop_at=10), controls).run()  # fmt: skip
    assert stopped.reason == "stopped" and stopped.global_step == 10
    saved = load_checkpoint(cut / "checkpoints" / "last.pt")
    assert saved["config"]["epochs"] == 3 and saved["steering"]["lr_scale"] == 0.5
    assert [a["what"] for a in saved["steering"]["acts"]] == ["lr_scale", "epochs"]
    controls, rec = Controls(), Recorder()
    resumed = Trainer(tiny_config(tmp_path, run_dir="", resume=str(cut / "checkpoints" / "last.pt"), epochs=3),
                      steered_at(controls, acts, rec), controls).run()  # fmt: skip
    assert resumed.reason == "completed" and resumed.global_step == 24
    assert resumed.test_accuracy == straight.test_accuracy
    a, b = weights(tmp_path / "a"), weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]


def test_the_multiplier_changes_the_lr_at_the_next_step_and_the_schedule_goes_on(tmp_path: Path) -> None:
    controls, rec = Controls(), Recorder()
    Trainer(tiny_config(tmp_path, epochs=1, schedule="linear"),
            steered_at(controls, {4: st.parse_lr_scale("0.25")}, rec), controls).run()  # fmt: skip
    lr = {p.global_step: p.lr for p in rec.of(ev.Progress)}
    plain, prec = Controls(), Recorder()
    Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "plain"), epochs=1, schedule="linear"), prec, plain).run()
    base = {p.global_step: p.lr for p in prec.of(ev.Progress)}
    assert [lr[s] for s in range(1, 5)] == [base[s] for s in range(1, 5)]
    assert all(lr[s] == pytest.approx(base[s] * 0.25) for s in range(5, 8))  # still decaying, a quarter as high


def test_shortening_below_the_epoch_under_way_is_refused_and_said(tmp_path: Path) -> None:
    controls, rec = Controls(), Recorder()
    done = Trainer(tiny_config(tmp_path, epochs=3),
                   steered_at(controls, {10: st.SteerAct(st.EPOCHS, 1.0, source=st.COMMAND_LINE)}, rec),
                   controls).run()  # fmt: skip
    refused = rec.of(ev.Steered)[0]
    assert (
        refused.refused == "cannot end before epoch 2, which is under way" and refused.old == 3.0 and refused.new == 1.0
    )
    assert "not changed" in refused.message and "command line" in refused.message
    assert done.epochs_done == 3


def test_early_stop_ends_the_run_completed_and_says_which_rule(tmp_path: Path) -> None:
    # No epoch gains 99 points on the first one's accuracy: patience 1 ends a 5-epoch run after epoch 2.
    out = io.StringIO()
    assert run_headless(tiny_config(tmp_path, epochs=5, early_stop="patience=1,min-delta=99"), out) == 0
    events = read_events(tmp_path / "run")
    done = events[-1]
    assert isinstance(done, ev.Finished) and done.reason == "completed" and done.epochs_done == 2
    assert done.cause.startswith("early stop: 1 epoch without a gain over 99 points (best ")
    assert f"completed ({done.cause}): 2 epochs" in out.getvalue()  # the last line says which rule
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2  # saved as it ended


def test_a_target_accuracy_set_while_training_ends_the_run_at_the_next_epoch_end(tmp_path: Path) -> None:
    controls, rec = Controls(), Recorder()
    done = Trainer(tiny_config(tmp_path, epochs=5), steered_at(controls, {3: st.parse_target("1%")}, rec),
                   controls).run()  # fmt: skip
    assert done.reason == "completed" and done.epochs_done == 1
    assert done.cause.startswith("target accuracy 1% reached at epoch 1")
    assert rec.of(ev.Steered)[0].new == 0.01 and "-> 1% at step" in rec.of(ev.Steered)[0].message


def test_epochs_on_resume_re_plan_the_schedule_and_fewer_than_done_are_refused(tmp_path: Path) -> None:
    Trainer(tiny_config(tmp_path, epochs=2, **COSINE), Recorder()).run()
    last = str(tmp_path / "run" / "checkpoints" / "last.pt")
    rec = Recorder()
    Trainer(tiny_config(tmp_path, run_dir="", resume=last, epochs=3), rec).run()
    replan = rec.of(ev.Steered)[0]
    assert (replan.what, replan.old, replan.new, replan.source) == ("epochs", 2.0, 3.0, st.RESUME)
    lrs = [p.lr for p in rec.of(ev.Progress)]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 0.01 * 0.02  # goes on from the end of the decay
    with pytest.raises(ConfigError, match="already trained 3 epochs; pass --epochs N with N > 3"):
        Trainer(tiny_config(tmp_path, run_dir="", resume=last, epochs=1), Recorder()).run()


def test_a_detached_run_is_steered_from_the_command_line_and_its_target_ends_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], project_env: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "long"
    assert detach_training(tiny_config(tmp_path, epochs=500, progress_hz=20.0, run_dir=str(run), name="long")) == 0
    pid = json.loads((run / TRAINER_FILE).read_text())["pid"]
    capsys.readouterr()
    try:
        wait_until(lambda: any(isinstance(e, ev.Progress) for e in read_events(run)), 60, "training to start")
        assert main(["steer", "long", "--lr-scale", "0.5", "--epochs", "+2"]) == 0
        out = capsys.readouterr().out
        assert "long: LR multiplier x1 -> x0.5 at step" in out and "epochs 500 -> 502 at step" in out
        assert "(from the command line)" in out
        assert main(["steer", "--lr-scale", "/10000"]) == 1  # x0.5 / 10000 is below the range: refused, said
        assert (
            "LR multiplier not changed: x5e-05 is outside 0.0001..10000 (asked from the command line; still x0.5)"
            in (capsys.readouterr().out)
        )
        assert main(["steer", "--lr-scale", "half"]) == 2 and "not a number" in capsys.readouterr().err
        assert main(["steer", "long"]) == 2 and "say what to change" in capsys.readouterr().err
        # Two steer commands at once: each prints the answer to its own act, and exits by it.
        for asks in ((["--lr-scale", "0.31"], ["--lr-scale", "31"]), (["--lr-scale", "/10000"], ["--lr-scale", "0.9"])):
            if asks[0][1] == "/10000":  # from x0.5 or x0.9: a ten-thousandth is below the range, refused
                assert main(["steer", "long", "--lr-scale", "0.5"]) == 0
            procs = [subprocess.Popen([sys.executable, "-m", "tui.cli", "steer", "long", *ask], cwd=tmp_path,
                                      env=project_env, stdout=subprocess.PIPE, text=True) for ask in asks]  # fmt: skip
            answers = [(proc.communicate(timeout=120)[0], proc.returncode) for proc in procs]
            if asks[0][1] == "0.31":
                assert "-> x0.31 at step" in answers[0][0] and "-> x31 at step" in answers[1][0], answers
                assert [code for _, code in answers] == [0, 0]
            else:
                assert "LR multiplier not changed: " in answers[0][0] and answers[0][1] == 1, answers
                assert "-> x0.9 at step" in answers[1][0] and answers[1][1] == 0, answers
        assert main(["steer", "--target-accuracy", "0.01%"]) == 0  # any accuracy reaches it
        wait_until(lambda: any(isinstance(e, ev.Finished) for e in read_events(run)), 120, "the run to end")
        finished = next(e for e in read_events(run) if isinstance(e, ev.Finished))
        assert finished.reason == "completed" and finished.cause.startswith("target accuracy 0.01% reached at epoch ")
        assert safe_summary(run) is not None and safe_summary(run).epochs == 502  # type: ignore[union-attr]
    finally:
        if trainer_alive(run):
            os.kill(pid, signal.SIGKILL)


def test_the_acts_are_in_the_export_and_the_runs_comparison(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from engine.run.export import export_csv, export_tensorboard
    from tui.screens.runs import compare_table

    controls, rec = Controls(), Recorder()
    acts = {2: st.parse_lr_scale("0.5"), 3: st.parse_early_stop("patience=4"), 4: st.parse_epochs("-5", st.BROWSER)}
    Trainer(tiny_config(tmp_path, epochs=2), steered_at(controls, acts, rec), controls).run()
    run = tmp_path / "run"
    _steps, _epochs, steering_csv = export_csv(run, tmp_path / "csv")
    rows = [line.split(",") for line in steering_csv.read_text().splitlines()]
    assert rows[0] == ["global_step", "epoch", "what", "old", "new", "old_extra", "new_extra", "source", "refused"]
    assert [r[:8] for r in rows[1:3]] == [["2", "1", "lr_scale", "1", "0.5", "0", "0", "dashboard"],
                                          ["3", "1", "early_stop", "0", "4", "0", "0", "dashboard"]]  # fmt: skip
    assert rows[3][2] == "epochs" and rows[3][7] == "browser" and rows[3][8]  # refused, and said why
    tb = EventAccumulator(str(export_tensorboard(run, tmp_path / "tb")))
    tb.Reload()
    assert "steering/text_summary" in tb.Tags()["tensors"]
    assert [(s.step, s.value) for s in tb.Scalars("train/lr_scale")] == [(2, 0.5)]
    summary = safe_summary(run)
    assert summary is not None and summary.steered == ["lr x0.5 @ step 2", "early stop patience=4 @ step 3"]
    assert summary.config["early_stop"] == "patience=4"
    table = compare_table([summary])
    cells = [list(col.cells) for col in table.columns]
    row = cells[0].index("steered")
    assert cells[1][row] == "lr x0.5 @ step 2" and cells[1][row + 1] == "early stop patience=4 @ step 3"
