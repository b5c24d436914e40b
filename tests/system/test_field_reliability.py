"""A run is never lost to what happens around it: a user's folder that only looks like a run,
a stop signal sent to the whole process group, an output stream that goes away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.run import events as ev
from engine.run import wire
from engine.run.config import TrainConfig
from engine.run.rundir import MARK, holds_run, read_events
from engine.train.checkpoint import load_checkpoint
from tests.helpers.common import ROOT
from tests.helpers.pty_app import PtyApp, count_in_events
from tests.helpers.waiting import wait_until

CLI = [sys.executable, "-m", "tui.cli"]
# The default CPU loader of the tutorial recipe: the tutorial's DataLoader with 2 worker processes.
WORKERS = ["--data", "demo", "--weights", "none", "--train-limit", "2000", "--test-limit", "64", "--device", "cpu",
           "--loader", "dataloader", "--workers", "2"]  # fmt: skip
TINY = ["--data", "demo", "--weights", "none", "--train-limit", "128", "--test-limit", "64", "--batch-size", "32",
        "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def _user_folder(path: Path) -> dict[str, bytes]:
    """A folder of a user's own files that happens to hold events.jsonl and config.json."""
    path.mkdir(parents=True)
    files = {"events.jsonl": b'{"when": "monday", "what": "lab meeting"}\n', "config.json": b'{"theme": "dark"}\n',
             "notes.txt": b"keep me\n"}  # fmt: skip
    for name, data in files.items():
        (path / name).write_bytes(data)
    return files


def test_overwrite_refuses_a_user_folder_that_only_looks_like_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    files = _user_folder(folder)
    done = subprocess.run([*CLI, "--headless", *TINY, "--run-dir", str(folder), "--overwrite"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("cifar-tui: error:") and len(done.stderr.splitlines()) == 1, done.stderr
    assert "not a run directory" in done.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # nothing replaced, nothing added


def test_a_run_is_known_by_what_only_cifar_tui_writes(tmp_path: Path) -> None:
    _user_folder(tmp_path / "mine")
    assert not holds_run(tmp_path / "mine")
    # A folder marked by cifar-tui is a run even before its files are written...
    (tmp_path / "marked").mkdir()
    (tmp_path / "marked" / MARK).write_text('{"format": "cifar-tui run directory", "version": 1}\n')
    assert holds_run(tmp_path / "marked")
    # ...but a mark a user wrote by hand with other content is not.
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / MARK).write_text("hello\n")
    assert not holds_run(tmp_path / "fake")
    # Run directories written before the mark existed: known by their config or their first event.
    (tmp_path / "old-config").mkdir()
    (tmp_path / "old-config" / "config.json").write_text(json.dumps(TrainConfig().to_dict()))
    assert holds_run(tmp_path / "old-config")
    (tmp_path / "old-events").mkdir()
    (tmp_path / "old-events" / "events.jsonl").write_text(wire.to_json_line(ev.Status("loading_data")) + "\n")
    assert holds_run(tmp_path / "old-events")


def test_a_run_written_before_the_mark_can_still_be_overwritten(tmp_path: Path) -> None:
    from engine.train.trainer import Trainer
    from tests.helpers.common import Recorder, tiny_config

    run = tmp_path / "run"
    # (The first run in this process: only the second command's --overwrite is under test.)
    first = Trainer(tiny_config(tmp_path, run_dir=str(run), train_limit=128, test_limit=64, batch_size=32),
                    Recorder()).run()  # fmt: skip
    assert first.reason == "completed"
    (run / MARK).unlink()  # as an earlier release left it
    again = subprocess.run([*CLI, "--headless", *TINY, "--epochs", "1", "--run-dir", str(run), "--overwrite"],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sum(isinstance(e, ev.RunStarted) for e in read_events(run)) == 1 and (run / MARK).is_file()


def _wait_for_training(run: Path, process: subprocess.Popen[str]) -> None:
    wait_until(lambda: count_in_events(run, '"kind":"progress"') > 0 or process.poll() is not None,
               what="training to start")  # fmt: skip
    assert process.poll() is None, process.communicate()


def _assert_stopped_with_checkpoint(run: Path, cause: str) -> None:
    last = read_events(run)[-1]
    assert isinstance(last, ev.Finished) and last.reason == "stopped" and cause in last.cause, last
    assert load_checkpoint(Path(last.checkpoint))["global_step"] == last.global_step > 0


def _sigterm_to_the_group(args: list[str]) -> tuple[int, str]:
    """Run ``cifar-tui --headless ARGS`` as a process group, SIGTERM the group once training has
    begun; its exit code and output (stdout and stderr)."""
    run = Path(args[args.index("--run-dir") + 1])
    process = subprocess.Popen([*CLI, "--headless", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=ROOT, start_new_session=True)  # fmt: skip
    try:
        _wait_for_training(run, process)
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, out[-3000:]


def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path: Path) -> None:
    """systemd's stop, a job runner or ``timeout``: SIGTERM to every process of the group, the
    DataLoader workers included. The run saves and exits 143, as for SIGTERM to the main process."""
    code, out = _sigterm_to_the_group([*WORKERS, "--epochs", "3", "--run-dir", str(tmp_path / "run")])
    assert code == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "killed by signal" not in out, out
    _assert_stopped_with_checkpoint(tmp_path / "run", "SIGTERM")


def test_sigterm_to_the_process_group_of_a_two_rank_run_saves_and_exits_143(tmp_path: Path) -> None:
    """The launcher passes the signal to the ranks (torchrun, signalled, would end them with a
    traceback of its own, and the launcher leave before they saved)."""
    args = ["--nproc", "2", *WORKERS, "--workers", "1", "--epochs", "3", "--run-dir", str(tmp_path / "run")]
    code, out = _sigterm_to_the_group(args)
    assert code == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "SignalException" not in out, out
    _assert_stopped_with_checkpoint(tmp_path / "run", "SIGTERM")


def test_sigterm_to_the_dashboards_process_group_saves_and_exits_143(tmp_path: Path) -> None:
    run = tmp_path / "run"
    app = PtyApp([*WORKERS, "--epochs", "3", "--run-dir", str(run)])  # a session leader: its own group
    try:
        wait_until(lambda: count_in_events(run, '"kind":"progress"') > 0 or app.poll() is not None, what="training")
        os.killpg(app.pid, signal.SIGTERM)
        assert app.wait() == 128 + signal.SIGTERM, app.output[-2000:]
    finally:
        app.kill()
    wait_until(lambda: count_in_events(run, '"kind":"finished"') > 0, what="the trainer to end")
    _assert_stopped_with_checkpoint(run, "")


def test_a_closed_stdout_never_ends_training(tmp_path: Path) -> None:
    """``cifar-tui --headless ... | head -3``: the reader leaves; the run goes on to its end and
    notes in its events that its output was lost."""
    run = tmp_path / "run"
    process = subprocess.Popen([*CLI, "--headless", *TINY, "--epochs", "3", "--log-every", "1", "--run-dir", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    for _ in range(3):
        assert process.stdout.readline()
    process.stdout.close()  # what head does after its lines
    err = process.stderr.read().decode()
    assert process.wait(300) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    events = read_events(run)
    assert isinstance(events[-1], ev.Finished) and events[-1].reason == "completed" and events[-1].epochs_done == 3
    notes = [e.message for e in events if isinstance(e, ev.Log) and "stdout cannot be written" in e.message]
    assert len(notes) == 1 and "Broken pipe" in notes[0], notes


def test_stdout_on_a_full_device_never_ends_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "--headless", *TINY, "--epochs", "1", "--run-dir", str(run)],
                              stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = read_events(run)
    assert isinstance(events[-1], ev.Finished) and events[-1].reason == "completed"
    assert any(isinstance(e, ev.Log) and "No space left on device" in e.message for e in events)


def test_listing_into_a_closed_pipe_or_a_full_device(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for n in range(3):
        (root / f"run-{n}").mkdir(parents=True)
        (root / f"run-{n}" / "events.jsonl").write_text(wire.to_json_line(ev.Status("loading_data")) + "\n")
    reader = subprocess.Popen([*CLI, "runs", "--json", "--runs-root", str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT)  # fmt: skip
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # the reader leaves before the first line (`| head -0`): every write fails
    err = reader.stderr.read().decode()
    assert reader.wait(120) == 0 and err == "", err  # the reader had what it wanted: no error
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "runs", "--runs-root", str(root)], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert (
        done.returncode == 1 and done.stderr == "cifar-tui: error: cannot write the output (No space left on device)\n"
    )
