"""Runs that outlive the terminal: detach, attach (replay + follow + steer), runs list, export."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.control_socket import TRAINER_FILE, ControlClient, ControlServer, trainer_alive
from engine.run.controls import Controls
from engine.run.export import export_csv
from engine.run.gallery import read_gallery
from engine.run.rundir import read_events
from engine.run.summary import list_runs, summarize
from engine.session.attached import AttachedSession
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, screen_text, tiny_config
from tests.helpers.waiting import app_until, wait_until
from tui.app import make_app
from tui.cli import main
from tui.launcher import detach_training
from tui.screens.dialogs import Choice


def kinds(run: Path) -> list[str]:
    return [e.kind for e in read_events(run)]


def attached_app(run: Path):  # type: ignore[no-untyped-def]
    return make_app(tiny_config(run.parent), lambda cfg: AttachedSession(run), refresh_hz=4.0)


async def test_detach_attach_steer_and_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert detach_training(tiny_config(tmp_path, epochs=500, progress_hz=20.0, run_dir=str(run))) == 0
    out = capsys.readouterr().out
    assert "detached: training continues in the background" in out and f"cifar-tui attach {run}" in out
    assert trainer_alive(run)
    pid = json.loads((run / TRAINER_FILE).read_text())["pid"]
    try:
        app = attached_app(run)
        async with app.run_test(size=(120, 40)) as pilot:
            await app_until(pilot, lambda: app.run_state.global_step > 2)
            await pilot.press("p")
            await app_until(pilot, lambda: app.run_state.state == "paused")
            await pilot.press("p")
            await pilot.press("e")
            # The trainer evaluated on request (read from its events: epochs here last a second, so
            # the dashboard's last evaluation may already be the next epoch's when the test looks).
            await app_until(pilot, lambda: any(isinstance(e, ev.Evaluation) and e.reason == "request"
                                                for e in read_events(run)))  # fmt: skip
            await pilot.press("s")
            await app_until(pilot, lambda: "checkpoint saved (request)" in screen_text(app))
            await pilot.press("q")  # leaves training running: no question asked
            await app_until(pilot, lambda: not app.is_running, 10)
        assert app.return_code == 0 and trainer_alive(run)
        history = kinds(run)
        assert {"paused", "resumed", "evaluation", "checkpoint_saved"} <= set(history)
        seen_before = len(history)
        wait_until(lambda: len(kinds(run)) > seen_before + 5)  # it kept training while nobody watched

        again = attached_app(run)
        async with again.run_test(size=(100, 30)) as pilot:
            await app_until(pilot, lambda: again.events_seen >= seen_before)  # the full history, replayed
            assert again.run_state.global_step >= app.run_state.global_step
            assert len(again.run_state.epochs_done) >= len(app.run_state.epochs_done)
            await pilot.press("x")
            await app_until(pilot, lambda: isinstance(again.screen, Choice) and bool(again.screen.query("#save")))
            await pilot.click("#save")
            await app_until(pilot, lambda: again.run_state.finished is not None)
            assert again.run_state.finished.cause == "stopped from a dashboard"
            await pilot.press("q")
        wait_until(lambda: not trainer_alive(run), 30)
        assert summarize(run).state == "stopped"  # type: ignore[union-attr]
    finally:
        if trainer_alive(run):
            os.kill(pid, signal.SIGKILL)


async def test_replay_of_a_finished_run_shows_its_final_per_class_accuracy(tmp_path: Path) -> None:
    rec = Recorder()
    cfg = tiny_config(tmp_path, epochs=2)
    Trainer(cfg, rec).run()
    final = rec.of(ev.Evaluation)[-1]
    app = attached_app(Path(cfg.run_dir))
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        assert app.run_state.last_eval is not None
        assert app.run_state.last_eval.per_class == final.per_class
        await app_until(pilot, lambda: f"{100 * final.accuracy:.2f}% overall" in screen_text(app))
        assert app.session is not None and app.session.send("pause") is False  # read-only: nobody to steer
        await pilot.press("q")
    assert app.return_code == 0


def test_torn_lines_unknown_kinds_and_empty_dirs(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    Trainer(cfg, Recorder()).run()
    run = Path(cfg.run_dir)
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"kind": "from_the_future", "t": 1.0}) + "\n")
        f.write('{"kind":"progress","t":1.0,"epoch":0,"ep')  # crash mid-write
    engine = AttachedSession(run)
    engine.start()
    replay = [e for e in engine.events(poll=0.01) if e is not None]
    assert isinstance(replay[-1], ev.Finished) and engine.skipped_lines == 1
    assert len(replay) == len(read_events(run))
    (tmp_path / "empty").mkdir()
    empty = AttachedSession(tmp_path / "empty")
    empty.start()
    assert [e.kind for e in empty.events()] == ["failed"]
    assert summarize(tmp_path / "empty") is None


def test_control_channel_refuses_other_users_and_ignores_malformed(tmp_path: Path) -> None:
    controls = Controls()
    warnings: list[str] = []
    server = ControlServer(tmp_path, controls, warnings.append)
    try:
        client = ControlClient(server.path)
        other = ControlClient(server.path)  # several dashboards at once
        assert client.send("pause") == {"ok": True} and controls.paused
        assert other.send("resume") == {"ok": True} and not controls.paused
        assert client.send("pause") == {"ok": True} and controls.paused
        other.close()
        client.stream.write(b"this is not json\n")
        client.stream.flush()
        assert json.loads(client.stream.readline())["ok"] is False
        assert controls.paused and not controls.stop_requested  # nothing happened
        assert "ignored malformed control command" in warnings[-1]
        client.close()
        server.owner_uid = os.getuid() + 1  # as if we were another user
        stranger = ControlClient(server.path)
        assert stranger.send("stop")["ok"] is False and not controls.stop_requested
        assert "refused a control connection from uid" in warnings[-1]
        stranger.close()
        assert oct(server.path.parent.stat().st_mode & 0o777) == "0o700"  # others cannot even reach it
    finally:
        server.close()


def test_runs_list_states_json_and_killed_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    Trainer(tiny_config(tmp_path, run_dir=str(root / "a-done")), Recorder()).run()
    controls = Controls()

    def stop_after_a_step(event: ev.Event) -> None:
        if isinstance(event, ev.Progress):
            controls.stop(save=True)

    Trainer(tiny_config(tmp_path, run_dir=str(root / "b-stopped"), epochs=3), stop_after_a_step, controls).run()
    # A run whose process died without a final report (kill -9, reboot): not "running" forever.
    crashed = root / "c-killed"
    crashed.mkdir()
    lines = (root / "a-done" / "events.jsonl").read_text().splitlines()
    (crashed / "events.jsonl").write_text("\n".join(line for line in lines if '"kind":"finished"' not in line) + "\n")
    (crashed / TRAINER_FILE).write_text(json.dumps({"pid": 999_999_999, "socket": "/nonexistent", "started": 1.0}))
    states = {r.name: r.state for r in list_runs(root)}
    assert states == {"a-done": "finished", "b-stopped": "stopped", "c-killed": "stopped"}
    assert main(["runs", "--runs-root", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in listed) == ["a-done", "b-stopped", "c-killed"]
    assert listed[0]["name"] == "a-done" and listed[0]["best_accuracy"] is not None  # oldest first
    assert main(["runs", "--runs-root", str(root)]) == 0
    table = capsys.readouterr().out
    assert "a-done" in table and "finished" in table and "1/1" in table


def test_export_csv(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=2)
    Trainer(cfg, Recorder()).run()
    steps_csv, epochs_csv, _acts = export_csv(Path(cfg.run_dir), tmp_path / "out")
    epochs = list(csv.DictReader(epochs_csv.open()))
    assert [row["epoch"] for row in epochs] == ["1", "2"] and 0 <= float(epochs[1]["test_accuracy"]) <= 1
    steps = list(csv.DictReader(steps_csv.open()))
    assert int(steps[-1]["global_step"]) == 16 and float(steps[0]["loss"]) > 0


def test_export_tensorboard_reads_back_and_replaces_an_earlier_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, epochs=2)
    Trainer(cfg, Recorder()).run()
    logdir = tmp_path / "tb"
    for _ in range(2):  # exporting again replaces the run's folder: no doubled curves
        assert main(["export", cfg.run_dir, "--tensorboard", str(logdir)]) == 0
    assert capsys.readouterr().out.split() == [str(logdir / "run")] * 2
    assert [p.name for p in logdir.iterdir()] == ["run"]
    tb = EventAccumulator(str(logdir / "run"))
    tb.Reload()
    epochs = [e for e in read_events(Path(cfg.run_dir)) if isinstance(e, ev.EpochEnd)]
    test_acc = tb.Scalars("epoch/test_accuracy")
    assert [s.step for s in test_acc] == [8, 16]  # epoch ends at their global steps (8 batches an epoch)
    assert [round(s.value, 3) for s in test_acc] == [round(100 * e.test_accuracy, 3) for e in epochs]
    assert [s.step for s in tb.Scalars("train/loss")][-1] == 16 and "class_accuracy/disc" in tb.Tags()["scalars"]
    assert "confusion_matrix/text_summary" in tb.Tags()["tensors"]
    # The gallery's most confident mistakes, as a picture at the step of their evaluation.
    gallery = read_gallery(Path(cfg.run_dir))
    assert gallery is not None and [i.step for i in tb.Images("mistakes")] == [gallery.global_step] == [16]
    shown = min(40, len(gallery.mistakes))
    assert tb.Images("mistakes")[0].width == min(10, shown) * 96
    # Several runs in one command, each with its hyperparameters for the HParams tab.
    other = tiny_config(tmp_path, epochs=1, lr=0.05, run_dir=str(tmp_path / "other"))
    Trainer(other, Recorder()).run()
    capsys.readouterr()
    assert main(["export", cfg.run_dir, other.run_dir, "--tensorboard", str(logdir)]) == 0
    assert sorted(p.name for p in logdir.iterdir()) == ["other", "run"]
    hp = EventAccumulator(str(logdir / "other"))
    hp.Reload()
    described = b"".join(hp.PluginTagToContent("hparams").values())
    assert b"momentum" in described and b"best_test_accuracy" in described
    assert hp.Scalars("hparam/best_test_accuracy")[0].value > 0
    # Without the package: one clear line, exit 2, nothing written.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["export", cfg.run_dir, "--tensorboard", str(tmp_path / "tb2")]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err and not (tmp_path / "tb2").exists()
    assert main(["export", cfg.run_dir]) == 2


def test_attach_and_export_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attach", "--runs-root", str(tmp_path / "none")]) == 2
    assert "no runs under" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--csv"]) == 2
    assert "holds no run" in capsys.readouterr().err


async def test_runs_screen_lists_runs_and_overlays_accuracy(tmp_path: Path) -> None:
    from tui.screens.runs import RunsScreen

    root = tmp_path / "runs"
    for name, lr in (("first", 0.01), ("second", 0.02)):
        Trainer(tiny_config(tmp_path, run_dir=str(root / name), epochs=2, lr=lr), Recorder()).run()
    app = make_app(tiny_config(tmp_path), lambda cfg: AttachedSession(root / "second"))
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.press("r")
        await app_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert [r.name for r in screen.runs] == ["first", "second"]
        assert {Path(p).name for p in screen.selected} == {"second"}  # the run on screen starts selected
        table = screen.query_one("DataTable")
        assert table.cursor_row == 1  # type: ignore[attr-defined]  # the cursor starts on the run on screen
        await pilot.press("up", "space")
        await app_until(pilot, lambda: {Path(p).name for p in screen.selected} == {"first", "second"})
        await app_until(pilot, lambda: all(w in screen_text(app) for w in ("accuracy %", "first", "second")))
        accuracy_plot = str(screen.query_one("#overlay").render())
        await pilot.press("v", "x")  # the loss, against steps
        await app_until(pilot, lambda: "loss: test" in screen_text(app) and "x: step" in screen_text(app))
        assert "train (lighter shade, smoothing 0.9)" in screen_text(app)  # the main plot's, as kept
        assert str(screen.query_one("#overlay").render()) != accuracy_plot
        await pilot.press("x")
        await app_until(pilot, lambda: "training time (min)" in screen_text(app))
        await pilot.press("slash", *"first", "enter")  # filter: only the runs that match
        await app_until(pilot, lambda: [r.name for r in screen.runs] == ["first"])
        await pilot.press("slash", "escape")  # esc in the filter clears it, not the screen
        await app_until(pilot, lambda: len(screen.runs) == 2 and app.screen is screen)
        await pilot.press("o")  # by best accuracy, the best first
        best_first = [r.name for r in sorted(screen.all_runs, key=lambda r: r.best_accuracy or 0.0, reverse=True)]
        await app_until(pilot, lambda: screen.order == "best" and [r.name for r in screen.runs] == best_first)
        await pilot.press("t")  # configs side by side: what differs first, highlighted
        await app_until(pilot, lambda: "≠ lr" in screen_text(app) and "final acc" in screen_text(app))
        text = screen_text(app)
        assert text.index("≠ lr") < text.index("batch_size") and "accuracy %" not in text
        await pilot.press("r")
        await pilot.press("q")


def test_a_run_stopped_after_evaluate_now_lists_that_accuracy(tmp_path: Path) -> None:
    controls = Controls()

    def sink(event: ev.Event) -> None:
        if isinstance(event, ev.Progress) and event.global_step == 2:
            controls.evaluate()
        elif isinstance(event, ev.Evaluation):
            controls.stop(save=True)

    cfg = tiny_config(tmp_path, epochs=3)
    Trainer(cfg, sink, controls).run()
    evaluation = next(e for e in read_events(Path(cfg.run_dir)) if isinstance(e, ev.Evaluation))
    summary = summarize(Path(cfg.run_dir))
    assert summary is not None and summary.state == "stopped" and summary.best_accuracy == evaluation.accuracy


def test_the_trainer_keeps_a_summary_that_listing_reads_instead_of_the_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.run import summary as run_summary
    from engine.run.summary import SummaryFold

    run = tmp_path / "run"
    Trainer(tiny_config(tmp_path, epochs=1), Recorder()).run()
    # A resume into the same run goes on from its history: one curve, the first start's time.
    last = str(run / "checkpoints" / "last.pt")
    Trainer(tiny_config(tmp_path, run_dir="", resume=last, epochs=2), Recorder()).run()
    fold = SummaryFold()
    for event in read_events(run):
        fold.add(event)
    kept = json.loads((run / "summary.json").read_text())
    assert kept == json.loads(json.dumps(fold.to_dict()))  # what the trainer kept is what its events say
    assert [epoch for epoch, _ in kept["curve"]] == [1, 2] and kept["status"] == "finished"

    def no_event_reading(path: Path) -> list[ev.Event]:
        raise AssertionError(f"read {path}/events.jsonl")

    monkeypatch.setattr(run_summary, "read_events", no_event_reading)
    (listed,) = list_runs(tmp_path)
    assert (listed.name, listed.state, listed.epochs_done) == ("run", "finished", 2)
    assert listed.final_accuracy is not None and listed.config["epochs"] == 2
    assert 100 * listed.final_accuracy == pytest.approx(kept["curve"][-1][1])


def test_a_detached_runs_output_log_holds_the_headless_lines(tmp_path: Path) -> None:
    """`tail -f output.log` (what --detach and `d` point to) shows the run as headless would."""
    run = tmp_path / "run"
    assert detach_training(tiny_config(tmp_path, epochs=2, run_dir=str(run))) == 0
    wait_until(lambda: any(isinstance(e, ev.Finished) for e in read_events(run)), 120, "the detached run's end")
    wait_until(lambda: not trainer_alive(run), 30, "the detached trainer to exit")
    log = (run / "output.log").read_text()
    assert "recipe tutorial" in log and "detached from the dashboard" in log
    assert "epoch 1/2" in log and "epoch 2/2" in log
    assert "per-class test accuracy:" in log and "disc" in log
