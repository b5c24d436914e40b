"""A run directory has exactly one live owner; resume writes back into the checkpoint's own run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.controls import Controls
from engine.run.errors import RunDirError
from engine.run.rundir import RunDirLock, live_owner
from engine.train.trainer import Trainer
from tests.helpers.common import ROOT, Recorder, tiny_config

CMD = [sys.executable, "-m", "tui.cli", "--headless", "--data", "demo", "--weights", "none", "--train-limit", "64",
       "--test-limit", "32", "--batch-size", "32", "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    cfg = tiny_config(tmp_path, run_dir="", runs_root=str(root), train_limit=64)
    recorders = [Recorder(), Recorder()]
    threads = [threading.Thread(target=Trainer(cfg, rec).run) for rec in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    dirs = [rec.of(ev.RunStarted)[0].run_dir for rec in recorders]
    assert len(set(dirs)) == 2, dirs
    for d in dirs:
        lines = (Path(d) / "events.jsonl").read_text().splitlines()
        assert sum('"kind":"run_started"' in line for line in lines) == 1  # never interleaved


def test_a_live_trainer_owns_its_run_directory(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=200)
    controls = Controls()
    rec = Recorder()
    trainer = threading.Thread(target=Trainer(cfg, rec, controls).run)
    trainer.start()
    try:
        rec.wait_for(lambda e: isinstance(e, ev.CheckpointSaved))
        run = Path(cfg.run_dir)
        assert live_owner(run) is not None
        # Another process with --overwrite, or with --resume of the live run: refused, exit 2, nothing touched.
        before = (run / "config.json").read_bytes()
        for extra in (["--run-dir", str(run), "--overwrite"], ["--resume", str(run / "checkpoints" / "last.pt")]):
            done = subprocess.run([*CMD, *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
            assert done.returncode == 2, done.stderr
            assert "in use by a live trainer" in done.stderr and "Traceback" not in done.stderr
        assert (run / "config.json").read_bytes() == before
    finally:
        controls.stop(save=True)
        trainer.join(300)
    assert live_owner(Path(cfg.run_dir)) is None  # released with the run


def test_a_killed_owner_leaves_no_stuck_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from engine.run.rundir import RunDirLock; assert RunDirLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(600)", str(run)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert live_owner(run) == holder.pid
    assert not RunDirLock(run).acquire()
    holder.kill()
    holder.wait()
    assert live_owner(run) is None and RunDirLock(run).acquire()


def test_same_run_dir_twice_the_loser_gets_a_clear_error(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    lock = RunDirLock(Path(cfg.run_dir))
    Path(cfg.run_dir).mkdir(parents=True)
    assert lock.acquire()  # another trainer got there first, between the check and the start
    try:
        with pytest.raises(RunDirError, match="in use by a live trainer"):
            Trainer(cfg, Recorder()).run()
        assert not (Path(cfg.run_dir) / "config.json").exists()
    finally:
        lock.release()


def _stopped_run(tmp_path: Path, run_dir: str) -> Path:
    controls = Controls()

    def sink(event: ev.Event) -> None:
        if isinstance(event, ev.Progress) and event.global_step >= 3:
            controls.stop(save=True)

    cfg = tiny_config(tmp_path, run_dir=run_dir, epochs=2)
    Trainer(cfg, sink, controls).run()
    return Path(cfg.run_dir)


def test_resume_from_another_folder_goes_back_into_the_checkpoints_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with monkeypatch.context() as inside:  # the first run in this process, started from work/
        inside.chdir(work)
        Trainer(
            tiny_config(tmp_path, run_dir="runs/rel", train_limit=64, test_limit=32, batch_size=32), Recorder()
        ).run()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([*CMD, "--epochs", "2", "--resume", str(work / "runs/rel/checkpoints/last.pt")], cwd=elsewhere,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not any(elsewhere.iterdir())  # nothing created where we stood
    assert (work / "runs/rel/events.jsonl").read_text().count('"kind":"run_started"') == 2


def test_resume_of_a_copied_checkpoint_starts_a_new_run_and_never_touches_its_folder(tmp_path: Path) -> None:
    run = _stopped_run(tmp_path, str(tmp_path / "run"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    shutil.copy(run / "checkpoints" / "last.pt", downloads / "ck.pt")
    (downloads / "config.json").write_text("the user's own file\n")
    rec = Recorder()
    cfg = tiny_config(tmp_path, run_dir="", runs_root=str(tmp_path / "runs"), resume=str(downloads / "ck.pt"))
    Trainer(cfg, rec).run()
    started = rec.of(ev.RunStarted)[0]
    assert Path(started.run_dir).parent == tmp_path / "runs" and started.start_step > 0
    assert (downloads / "config.json").read_text() == "the user's own file\n"
    assert sorted(p.name for p in downloads.iterdir()) == ["ck.pt", "config.json"]


def test_a_folder_of_other_files_is_never_made_a_run(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.tex").write_text("...")
    for extra in ([], ["--overwrite"]):
        done = subprocess.run(
            [*CMD, "--run-dir", str(docs), *extra], capture_output=True, text=True, cwd=ROOT, timeout=300
        )
        assert done.returncode == 2 and "not a run directory" in done.stderr, done.stderr
    assert sorted(p.name for p in docs.iterdir()) == ["thesis.tex"]
