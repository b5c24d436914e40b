"""A real full disk: a small tmpfs under the run directory (needs root, as in CI; skipped otherwise)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.controls import Controls
from engine.run.errors import exit_code
from engine.run.rundir import read_events
from engine.train.checkpoint import load_checkpoint
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config

CHECKPOINT_BYTES = 12_401_593  # mobilenet_v3_small with optimizer state, 10 classes (measured)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def events_file_is_valid(run: Path) -> list[dict]:
    lines = (run / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]  # every line whole, strict JSON


def test_checkpoint_on_a_full_disk_reports_and_training_goes_on(tmp_path: Path) -> None:
    # Room for one checkpoint and the log, not for a second checkpoint beside it.
    with small_tmpfs(tmp_path / "disk", int(CHECKPOINT_BYTES * 1.6)) as disk:
        cfg = tiny_config(disk, arch="mobilenet_v3_small", epochs=3, save_wait=0)
        rec = Recorder()
        finished = Trainer(cfg, rec).run()
        assert finished.reason == "completed" and finished.epochs_done == 3
        errors = [e.message for e in rec.of(ev.Log) if e.level == "error"]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "training continues" in errors[0]
        # The end did not fit either (--save-wait 0: no waiting): said, and the exit code is not a success.
        assert "No space left on device" in finished.unsaved and exit_code(finished) == 1
        folder = Path(cfg.run_dir) / "checkpoints"
        assert load_checkpoint(folder / "last.pt")["global_step"] == 8  # the older checkpoint, intact
        assert not list(folder.glob(".*.tmp"))  # no torn temporary file left to fill the disk
        kinds = [e["kind"] for e in events_file_is_valid(Path(cfg.run_dir))]
        assert kinds[-1] == "finished"


def test_events_log_on_a_full_disk_the_dashboard_still_hears_everything(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", 4 * 1024 * 1024) as disk:
        cfg = tiny_config(disk, arch="mobilenet_v3_small", epochs=2, keep=1, train_limit=1024, save_wait=0)
        filler = disk / "filler"
        rec = Recorder()
        progress = {"n": 0}

        def sink(event: ev.Event) -> None:
            rec(event)
            if isinstance(event, ev.Progress):
                progress["n"] += 1
                if progress["n"] == 2:  # fill the disk to the last byte
                    with open(filler, "wb") as f, contextlib.suppress(OSError):
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    with open(filler, "ab", buffering=0) as f, contextlib.suppress(OSError):
                        while f.write(b"\0"):  # and the last few bytes of a block
                            pass
            elif isinstance(event, ev.EpochEnd) and event.epoch == 1:
                filler.unlink()  # room again (a few pages of events later)

        finished = Trainer(cfg, sink).run()
        assert finished.reason == "completed"
        errors = [e.message for e in rec.of(ev.Log) if e.level == "error"]
        assert any("cannot write" in m and "events.jsonl" in m for m in errors)
        assert any("written again" in m and "missing" in m for m in errors)
        written = events_file_is_valid(Path(cfg.run_dir))
        assert written[-1]["kind"] == "finished" and len(written) < len(rec.events)
        assert isinstance(rec.events[-1], ev.Finished)  # the live sink heard everything


def waiting_for_room(event: ev.Event) -> bool:
    return isinstance(event, ev.Status) and event.state == "waiting_for_room"


def test_the_final_checkpoint_waits_for_room_and_is_written_once_there_is_some(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", int(CHECKPOINT_BYTES * 2.6)) as disk:
        filler = disk / "filler"
        filler.write_bytes(bytes(CHECKPOINT_BYTES))  # room for the first checkpoint, not for the second
        cfg = tiny_config(disk, arch="mobilenet_v3_small", epochs=2, save_wait=600)
        rec = Recorder()

        def sink(event: ev.Event) -> None:
            rec(event)
            if waiting_for_room(event):
                filler.unlink(missing_ok=True)  # the user makes room

        finished = Trainer(cfg, sink).run()
        assert finished.reason == "completed" and not finished.unsaved and exit_code(finished) == 0
        said = [e.message for e in rec.of(ev.Log)]
        assert any(m.startswith("final checkpoint NOT saved") and "make room" in m for m in said)
        assert any(m.startswith("final checkpoint saved after all") for m in said)
        assert load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")["global_step"] == 16  # the end


def test_a_stop_while_waiting_for_room_gives_up_the_final_checkpoint_once(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", int(CHECKPOINT_BYTES * 2.6)) as disk:
        (disk / "filler").write_bytes(bytes(CHECKPOINT_BYTES))
        cfg = tiny_config(disk, arch="mobilenet_v3_small", epochs=2, save_wait=600)
        controls, rec = Controls(), Recorder()

        def sink(event: ev.Event) -> None:
            rec(event)
            if waiting_for_room(event):
                controls.stop(save=True, cause="test")  # Ctrl-C, or q in the dashboard

        finished = Trainer(cfg, sink, controls).run()
        assert finished.reason == "stopped" and "No space left on device" in finished.unsaved
        assert exit_code(finished) == 1  # trained, but its end is lost: not a success
        # The stop's own save did not start a second wait.
        assert len([e for e in rec.of(ev.Log) if e.message.startswith("final checkpoint NOT saved")]) == 1
        assert load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")["global_step"] == 8


def test_two_ranks_whose_final_checkpoint_does_not_fit_end_once_with_exit_code_1(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    with small_tmpfs(tmp_path / "disk", int(CHECKPOINT_BYTES * 2.6)) as disk:
        (disk / "filler").write_bytes(bytes(CHECKPOINT_BYTES))
        run = disk / "run"
        # --rank-timeout 31: the other rank waits in a collective, so the wait is capped at 1 s.
        done = subprocess.run(
            [sys.executable, "-m", "engine", "--nproc", "2", "--max-restarts", "1", "--rank-timeout", "31",
             "--device", "cpu", "--data", "demo", "--weights", "none", "--arch", "mobilenet_v3_small",
             "--train-limit", "256", "--test-limit", "100", "--batch-size", "32", "--epochs", "2",
             "--run-dir", str(run)],
            capture_output=True, text=True, env=project_env, timeout=600,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr[-2000:]
        assert "this run's end is in no checkpoint" in done.stdout
        events = read_events(run)
        # Rank 0 exits 0 and the launcher says how the run ended: torchrun restarting the group
        # (--max-restarts) to train it all again onto the same full disk would be worse.
        assert len([e for e in events if isinstance(e, ev.RunStarted)]) == 1
        assert isinstance(events[-1], ev.Finished) and "No space left on device" in events[-1].unsaved


def test_a_full_disk_takes_room_from_the_oldest_kept_checkpoint_never_last_or_best(tmp_path: Path) -> None:
    import torch

    from engine.train.checkpoint import CheckpointStore

    weights = torch.zeros(256 * 1024)  # 1 MiB a checkpoint
    with small_tmpfs(tmp_path / "disk", int(3.5 * 2**20)) as disk:
        store = CheckpointStore(disk / "checkpoints", keep=3)
        for step in (1, 2, 3):  # the disk holds three
            store.save({"global_step": step, "w": weights}, best=step == 1)
        store.save({"global_step": 4, "w": weights}, best=False)  # the keep-3 window rolls on, full disk or not
        names = sorted(p.name for p in store.folder.glob("step-*.pt"))
        assert names == ["step-00000001.pt", "step-00000003.pt", "step-00000004.pt"]
        assert (store.folder / "best.pt").stat().st_ino == (store.folder / "step-00000001.pt").stat().st_ino
        assert torch.load(store.folder / "last.pt", weights_only=True)["global_step"] == 4  # (not a run's: no config)


def test_no_nan_in_events_jsonl(tmp_path: Path) -> None:
    from engine.run.run_writer import RunDirSink

    sink = RunDirSink(tmp_path / "run")
    sink.open(tiny_config(tmp_path))
    sink(ev.Log("x"))
    sink(ev.EpochEnd(1, 2, float("nan"), 0.5, float("inf"), 0.1, 10.0, 1.0, 0.1, 0.01))
    sink.close()
    lines = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    assert all("NaN" not in line and "Infinity" not in line for line in lines)
    assert json.loads(lines[-1])["train_loss"] is None
    os.sync()


def test_save_wait_may_change_when_resuming(tmp_path: Path) -> None:
    from engine.train.setup import merge_resume_config

    saved = tiny_config(tmp_path).to_dict()  # a checkpoint's config, with the default wait
    (tmp_path / "copied.pt").write_bytes(b"")  # (only its place is looked at here)
    cfg = tiny_config(tmp_path, save_wait=0.0, resume=str(tmp_path / "copied.pt"))  # given: explicit
    assert merge_resume_config(cfg, saved).save_wait == 0.0
