"""Fault injection: signals, kill -9 mid-write, disk full, NaN, out of memory, crashes. Nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.run import events as ev
from engine.run.rundir import read_events
from engine.train.checkpoint import CheckpointStore, load_checkpoint
from engine.train.trainer import Trainer
from tests.helpers.common import ROOT, Recorder, tiny_config
from tests.helpers.pty_app import count_in_events
from tests.helpers.waiting import wait_until

CMD = [sys.executable, "-m", "tui.cli", "--headless", "--data", "demo", "--weights", "none", "--train-limit", "256",
       "--test-limit", "64", "--batch-size", "32", "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def wait_for_progress(run: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    events = run / "events.jsonl"
    wait_until(lambda: events.exists() and '"kind":"progress"' in events.read_text(), timeout, "progress", proc)


def test_headless_signals_each_save_stop_and_resume(tmp_path: Path, project_env: dict[str, str]) -> None:
    """SIGINT, SIGTERM and SIGHUP in turn on one run, each process resumed from the checkpoint the
    one before saved. (Merged from a test per signal, to save two trainer processes.)"""
    run = tmp_path / "run"
    last_pt = run / "checkpoints" / "last.pt"
    stopped_at = 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        again = ["--resume", str(last_pt)] if stopped_at else ["--epochs", "100", "--run-dir", str(run)]
        seen = count_in_events(run, '"kind":"progress"')
        proc = subprocess.Popen([*CMD, *again], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=project_env, cwd=ROOT)  # fmt: skip
        wait_until(lambda: count_in_events(run, '"kind":"progress"') > seen, 60, "progress", proc)  # noqa: B023
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err
        assert not stopped_at or f"resumed from {last_pt}" in out
        last = read_events(run)[-1]
        assert isinstance(last, ev.Finished) and last.reason == "stopped" and last.cause == sig.name
        ckpt = load_checkpoint(Path(last.checkpoint))
        assert ckpt["global_step"] == last.global_step > stopped_at
        stopped_at = last.global_step
    resumed = subprocess.run([*CMD, "--epochs", str(ckpt["epoch"] + 1), "--resume", str(last_pt)],
                             capture_output=True, text=True, env=project_env, cwd=ROOT, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {last_pt}" in resumed.stdout


SLOW_WRITER = """
import sys, time
from pathlib import Path
from engine.run.fileio import atomic_write
def slow(f):
    for _ in range(400):
        f.write(b"x" * 65536)
        f.flush()
        time.sleep(0.01)
atomic_write(Path(sys.argv[1]), slow)
"""


def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one_intact(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    folder = tmp_path / "checkpoints"
    state = {"format": "cifar-tui/1", "global_step": 7, "weights": torch.arange(10.0)}
    store = CheckpointStore(folder, keep=3)
    path = store.save(state, best=True)
    before = (folder / "last.pt").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(folder / "last.pt")], env=project_env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not list(folder.glob(".last.pt.*.tmp")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    proc.kill()  # SIGKILL in the middle of the write
    proc.wait()
    assert (folder / "last.pt").read_bytes() == before
    assert torch.equal(torch.load(folder / "last.pt", weights_only=True)["weights"], torch.arange(10.0))
    assert list(folder.glob(".*.tmp"))  # the torn temporary file...
    CheckpointStore(folder, keep=3)
    assert not list(folder.glob(".*.tmp"))  # ...is cleared by the next run, never mistaken for a checkpoint
    assert path.exists()


def test_keeps_the_last_k_checkpoints_plus_best(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=5, keep=2)
    rec = Recorder()
    Trainer(cfg, rec).run()
    folder = Path(cfg.run_dir) / "checkpoints"
    steps = sorted(p.name for p in folder.glob("step-*.pt"))
    assert steps == ["step-00000032.pt", "step-00000040.pt"]
    best = max(rec.of(ev.EpochEnd), key=lambda e: e.test_accuracy)
    assert load_checkpoint(folder / "best.pt")["epoch"] == best.epoch
    assert load_checkpoint(folder / "last.pt")["global_step"] == 40


def inject(monkeypatch: pytest.MonkeyPatch, at_step: int, make: object) -> None:
    """Make the loss computation misbehave from the ``at_step``-th training step on."""
    import engine.train.loop as loop

    real = loop.F.cross_entropy
    count = {"n": 0}

    class Patched:
        def __getattr__(self, name: str) -> object:
            return getattr(torch.nn.functional, name)

        @staticmethod
        def cross_entropy(logits: torch.Tensor, y: torch.Tensor, **kw: object) -> torch.Tensor:
            if logits.requires_grad:
                count["n"] += 1
                if count["n"] >= at_step:
                    return make(real(logits, y, **kw))  # type: ignore[operator]
            return real(logits, y, **kw)

    monkeypatch.setattr(loop, "F", Patched())


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inject(monkeypatch, 12, lambda loss: loss * float("nan"))
    rec = Recorder()
    cfg = tiny_config(tmp_path, epochs=3, progress_hz=0.001, log_every=1000)  # no progress report at step 12
    with pytest.raises(FloatingPointError):
        Trainer(cfg, rec).run()
    failed = rec.of(ev.Failed)[0]
    assert failed.error == "diverged" and "step 4" in failed.message and "step-00000008.pt" in failed.message
    for path in (Path(cfg.run_dir) / "checkpoints").glob("*.pt"):
        assert all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values() if t.is_floating_point())


def test_out_of_memory_is_reported_with_a_suggestion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(loss: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    inject(monkeypatch, 3, oom)
    rec = Recorder()
    from engine.run.errors import UserError

    with pytest.raises(UserError, match="try --batch-size 8"):
        Trainer(tiny_config(tmp_path), rec).run()
    assert rec.of(ev.Failed)[0].error == "out_of_memory"


def test_a_crash_is_recorded_with_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(loss: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in the training step")

    inject(monkeypatch, 3, boom)
    cfg = tiny_config(tmp_path)
    with pytest.raises(RuntimeError):
        Trainer(cfg, Recorder()).run()
    lines = [json.loads(line) for line in (Path(cfg.run_dir) / "events.jsonl").read_text().splitlines()]
    failed = next(e for e in lines if e["kind"] == "failed")
    assert failed["error"] == "crash" and "boom in the training step" in failed["traceback"]
    assert "Traceback (most recent call last)" in failed["traceback"]


def test_killed_trainer_process_is_reported(tmp_path: Path) -> None:
    from engine.session.child import ChildSession

    proc = ChildSession(tiny_config(tmp_path, epochs=100))
    proc.start()
    events: list[ev.Event] = []
    for event in proc.events():
        if isinstance(event, ev.Progress) and not any(isinstance(e, ev.Progress) for e in events):
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
        if event is not None:
            events.append(event)
    proc.close()
    assert isinstance(events[-1], ev.Failed) and "killed by signal 9" in events[-1].message


def _strict(line: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in events.jsonl")

    data: dict = json.loads(line, parse_constant=refuse)
    return data


def test_a_diverging_run_fails_clearly_and_never_saves_non_finite_state(tmp_path: Path, project_env: dict) -> None:
    run = tmp_path / "run"
    done = subprocess.run([*CMD, "--epochs", "3", "--lr", "100", "--run-dir", str(run)], capture_output=True,
                          text=True, env=project_env, cwd=ROOT, timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "diverged" in done.stderr and "Traceback" not in done.stderr
    events = [_strict(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "failed" and events[-1]["error"] == "diverged"
    assert not any(e["kind"] == "finished" for e in events)
    for path in (run / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)["model"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), path


def test_non_finite_batchnorm_statistics_count_as_divergence() -> None:
    from engine.train.loop_parts import all_finite

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert all_finite(model)
    model[1].running_var.fill_(float("inf"))  # weights fine, statistics blown up
    assert not all_finite(model)


def test_ctrl_c_with_dataloader_workers_is_reported_once(tmp_path: Path, project_env: dict) -> None:
    """A terminal's Ctrl-C reaches the whole process group, DataLoader workers included."""
    run = tmp_path / "run"
    cmd = [*CMD, "--epochs", "100", "--loader", "dataloader", "--workers", "2", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env, cwd=ROOT,
                            start_new_session=True)  # fmt: skip
    wait_for_progress(run, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert out.count("[signal] SIGINT") == 1 and "Traceback" not in err
