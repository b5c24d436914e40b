"""Training runs end to end: events, run directory, checkpoints, controls, resume."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from engine.run import events as ev
from engine.run import wire
from engine.run.controls import Controls
from engine.run.run_writer import RunDirSink
from engine.run.rundir import read_events
from engine.run.summary import summarize
from engine.train.checkpoint import load_checkpoint
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config


def test_demo_run_learns_and_writes_run_directory(tmp_path: Path, recorder: Recorder) -> None:
    # 2,048 of the demo set's 5,000 images (its full size: tests/unit/test_pipeline.py): 17 s, not 40.
    cfg = tiny_config(tmp_path, train_limit=2048, test_limit=500, batch_size=64, lr=0.02, schedule="onecycle",
                      log_every=200)  # fmt: skip
    finished = Trainer(cfg, recorder).run()
    assert finished.reason == "completed"
    assert finished.test_accuracy is not None and finished.test_accuracy > 0.9  # one CPU epoch
    run = Path(cfg.run_dir)
    assert json.loads((run / "config.json").read_text())["data"] == "demo"
    kinds = [e.kind for e in read_events(run)]
    assert kinds.count("run_started") == 1 and kinds[-1] == "finished"
    assert "epoch_end" in kinds and "evaluation" in kinds
    started = recorder.of(ev.RunStarted)[0]
    assert started.train_size == 2048 and started.test_size == 500 and len(started.class_names) == 10
    evaluation = recorder.of(ev.Evaluation)[-1]
    assert len(evaluation.per_class) == 10 and sum(map(sum, evaluation.confusion)) == 500
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["class_names"] == started.class_names


def test_events_are_plain_json_values(tmp_path: Path, recorder: Recorder) -> None:
    Trainer(tiny_config(tmp_path), recorder).run()
    for event in recorder.events:
        data = wire.to_dict(event)
        assert wire.from_dict(json.loads(json.dumps(data))) == event


def test_progress_is_rate_limited(tmp_path: Path, recorder: Recorder) -> None:
    Trainer(tiny_config(tmp_path, progress_hz=0.001, log_every=1000, epochs=2), recorder).run()
    # Only the last step of each epoch reports when the rate limit never lapses.
    assert [p.step for p in recorder.of(ev.Progress)] == [8, 8]


def run_in_thread(trainer: Trainer) -> threading.Thread:
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    return thread


def test_pause_stops_the_step_counter_and_resume_continues(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `runs` and `cifar-tui pause` read (summary.json) is never behind an event already in
    # events.jsonl: a `pause` that saw Paused and a second `pause` at once must find "paused".
    states: list[tuple[str, str]] = []
    write = RunDirSink.__call__

    def write_then_look(sink: RunDirSink, event: ev.Event) -> None:
        write(sink, event)
        if isinstance(event, ev.Paused | ev.Resumed | ev.Finished):
            states.append((event.kind, summarize(sink.path).state))  # type: ignore[union-attr]

    monkeypatch.setattr(RunDirSink, "__call__", write_then_look)
    controls = Controls()
    trainer = Trainer(tiny_config(tmp_path, epochs=3), recorder, controls)
    thread = run_in_thread(trainer)
    recorder.wait_for(lambda e: isinstance(e, ev.Progress) and e.global_step >= 2)
    controls.pause()
    paused = recorder.wait_for(lambda e: isinstance(e, ev.Paused))
    steps_at_pause = trainer.state.global_step
    thread.join(0.8)
    assert thread.is_alive() and trainer.state.global_step == steps_at_pause == paused.global_step
    controls.resume()
    thread.join(60)
    assert not thread.is_alive()
    assert recorder.of(ev.Resumed) and recorder.of(ev.Finished)[0].global_step == 24
    assert states == [("paused", "paused"), ("resumed", "running"), ("finished", "finished")]


def test_evaluate_now_reports_mid_epoch_and_training_continues(tmp_path: Path, recorder: Recorder) -> None:
    controls = Controls()
    controls.evaluate()  # taken at the first batch boundary...
    first = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "a")), recorder, controls).run()
    request = [e for e in recorder.of(ev.Evaluation) if e.reason == "request"]
    assert len(request) == 1 and request[0].step == 0 and len(request[0].per_class) == 10
    # ...and evaluating changes nothing in training: same result as a run without it.
    plain = Recorder()
    second = Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "b")), plain).run()
    assert first.test_accuracy == second.test_accuracy
    assert [p.loss for p in recorder.of(ev.Progress)] == [p.loss for p in plain.of(ev.Progress)]


def test_save_now_and_stop_with_save(tmp_path: Path, recorder: Recorder) -> None:
    controls = Controls()
    trainer = Trainer(tiny_config(tmp_path, epochs=5), recorder, controls)
    thread = run_in_thread(trainer)
    recorder.wait_for(lambda e: isinstance(e, ev.Progress) and e.global_step >= 3)
    controls.save()
    saved = recorder.wait_for(lambda e: isinstance(e, ev.CheckpointSaved) and e.reason == "request")
    assert load_checkpoint(Path(saved.path))["global_step"] == saved.global_step
    controls.stop(save=True)
    thread.join(60)
    finished = recorder.of(ev.Finished)[0]
    assert finished.reason == "stopped" and finished.epochs_done < 5
    stop_ckpt = next(e for e in recorder.of(ev.CheckpointSaved) if e.reason == "stop")
    assert load_checkpoint(Path(stop_ckpt.path))["global_step"] == finished.global_step


def final_state(tmp_path: Path, name: str, **kw: object) -> tuple[dict, ev.Finished]:
    cfg = tiny_config(tmp_path, run_dir=str(tmp_path / name), **kw)
    finished = Trainer(cfg, Recorder()).run()
    return torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True), finished


def test_resume_after_an_epoch_matches_a_straight_run(tmp_path: Path) -> None:
    # The tutorial's constant LR: "1 epoch, then 1 more" is the same schedule as "2 epochs".
    straight, done = final_state(tmp_path, "straight", epochs=2)
    final_state(tmp_path, "split", epochs=1)
    rec = Recorder()
    cfg = tiny_config(tmp_path, run_dir="", resume=str(tmp_path / "split" / "checkpoints" / "last.pt"), epochs=2)
    resumed = Trainer(cfg, rec).run()
    assert resumed.test_accuracy == done.test_accuracy
    assert rec.of(ev.RunStarted)[0].start_epoch == 1
    after = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=True)
    assert after["global_step"] == straight["global_step"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, after["model"][name]), name


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_resume_mid_epoch_is_exact(tmp_path: Path, loader: str) -> None:
    # A cosine schedule: the resumed run must continue the LR schedule where it stopped. The
    # DataLoader runs the tutorial's 2 workers: which worker augments which batch must not matter.
    straight, done = final_state(tmp_path, "straight", epochs=2, schedule="cosine", loader=loader)
    controls = Controls()
    rec = Recorder()
    cfg = tiny_config(tmp_path, run_dir=str(tmp_path / "cut"), epochs=2, schedule="cosine", loader=loader)

    def stop_at_step_11(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.Progress) and event.global_step == 11:
            controls.stop(save=True)

    stopped = Trainer(cfg, stop_at_step_11, controls).run()
    assert stopped.reason == "stopped" and stopped.global_step == 11  # in the middle of epoch 2
    last = str(tmp_path / "cut" / "checkpoints" / "last.pt")
    resumed = Trainer(tiny_config(tmp_path, run_dir="", resume=last, epochs=2, schedule="cosine", loader=loader),
                      Recorder()).run()  # fmt: skip
    assert resumed.test_accuracy == done.test_accuracy
    final = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, final["model"][name]), name


def test_resume_refuses_changing_the_model(tmp_path: Path) -> None:
    final_state(tmp_path, "base")
    from engine.run.errors import ConfigError

    cfg = tiny_config(tmp_path, run_dir="", resume=str(tmp_path / "base" / "checkpoints" / "last.pt"), stem="cifar")
    with pytest.raises(ConfigError, match="--stem cannot change"):
        Trainer(cfg, Recorder()).run()


def test_resume_of_a_finished_run_asks_for_more_epochs(tmp_path: Path) -> None:
    final_state(tmp_path, "done")
    from engine.run.errors import ConfigError

    cfg = tiny_config(tmp_path, run_dir="", resume=str(tmp_path / "done" / "checkpoints" / "last.pt"))
    with pytest.raises(ConfigError, match="already trained 1 epochs; pass --epochs"):
        Trainer(cfg, Recorder()).run()


def test_fast_recipe_parts_with_ema_run_and_resume(tmp_path: Path) -> None:
    # CPU stand-in for the GPU recipe: CIFAR stem, Nesterov, warm-up + decay, label smoothing, TTA, EMA.
    # (The CIFAR stem costs 16 times the ImageNet stem's compute here: two steps of 32, 32 test images.)
    cfg = tiny_config(tmp_path, recipe="fast", epochs=2, batch_size=32, train_limit=64, test_limit=32, ema=0.9)
    rec = Recorder()
    controls = Controls()

    def stop_after_first_epoch(event: ev.Event) -> None:
        rec(event)
        if isinstance(event, ev.EpochEnd):
            controls.stop()

    Trainer(cfg, stop_after_first_epoch, controls).run()
    ckpt = load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")
    assert ckpt["ema"]["updates"] == ckpt["global_step"] == 2
    assert ckpt["config"]["stem"] == "cifar" and ckpt["model"]["conv1.weight"].shape[-1] == 3
    resumed = Trainer(
        tiny_config(
            tmp_path,
            recipe="fast",
            run_dir="",
            resume=str(Path(cfg.run_dir) / "checkpoints" / "last.pt"),
            epochs=2,
            batch_size=32,
            train_limit=64,
            test_limit=32,
            ema=0.9,
        ),
        Recorder(),
    ).run()
    assert resumed.epochs_done == 2
    assert load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")["ema"]["updates"] == 4


def test_eval_every_evaluates_between_epoch_ends_and_leaves_training_as_it_was(tmp_path: Path) -> None:
    rec = Recorder()
    Trainer(tiny_config(tmp_path, run_dir=str(tmp_path / "every"), epochs=2, eval_every=3), rec).run()
    interval = [e for e in rec.of(ev.Evaluation) if e.reason == "interval"]
    assert [e.global_step for e in interval] == [3, 6, 9, 12, 15]  # 8 steps an epoch: epoch ends evaluate anyway
    plain, _ = final_state(tmp_path, "plain", epochs=2)
    every = torch.load(tmp_path / "every" / "checkpoints" / "last.pt", weights_only=True)
    for name, tensor in plain["model"].items():  # evaluating never changes what is trained
        assert torch.equal(tensor, every["model"][name]), name
