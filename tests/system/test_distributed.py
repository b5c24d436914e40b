"""Data-parallel training through torchrun on the CPU (gloo): the command a user runs, two ranks."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from engine.data.pipeline import TensorBatches
from engine.data.sources import load_data
from engine.run import events as ev
from engine.run.config import from_recipe
from engine.run.control_socket import TRAINER_FILE, ControlClient
from engine.run.gallery import read_gallery
from engine.run.rundir import read_events
from engine.run.steering import COMMAND_LINE, parse_epochs, parse_lr_scale
from engine.train.checkpoint import load_checkpoint
from engine.train.evaluate import evaluate
from engine.train.models import build_model
from tests.helpers.waiting import wait_until

DATA = ["--device", "cpu", "--data", "demo", "--weights", "none", "--train-limit", "256", "--test-limit", "200",
        "--batch-size", "32", "--lr", "0.02", "--loader", "tensor"]  # fmt: skip
"""Eight steps an epoch, 16 images a rank a step: what the tests that check control, faults and
exactness need (they assert nothing of learning)."""
LEARNING = ["--train-limit", "512", "--batch-size", "64"]
"""For the tests that check the run learned: 256 images at batch 32 learned too little (13-16%)."""


def engine(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", "--nproc", "2", *DATA, *args]


def wait_for(cond: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait on the run directory while the launch runs (a hang guard, not a timing assertion)."""
    wait_until(cond, timeout, what, proc)


def rank_processes(launcher: int, rank: str) -> list[Any]:
    """The training processes of ``rank`` under the launcher's pid (not their DataLoader workers)."""
    found = [p for p in psutil.Process(launcher).children(recursive=True) if p.environ().get("RANK") == rank]
    return [p for p in found if p.parent() is None or p.parent().environ().get("RANK") != rank]


def end_tree(pid: int) -> None:
    """Kill a launch and everything under it (torchrun, ranks, workers) if still running."""
    try:
        root = psutil.Process(pid)
        tree = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def events_of(run: Path) -> list[ev.Event]:
    return read_events(run) if (run / "events.jsonl").is_file() else []


def paused_at_a_step(run: Path, proc: subprocess.Popen[str]) -> ControlClient:
    """Wait until the run trains, pause it through its control socket; the client stays open."""
    wait_for(lambda: (run / TRAINER_FILE).is_file() and any(isinstance(e, ev.Progress) for e in events_of(run)),
             "training", proc)  # fmt: skip
    client = ControlClient(Path(json.loads((run / TRAINER_FILE).read_text())["socket"]), timeout=30)
    assert client.send("pause")["ok"]
    wait_for(lambda: any(isinstance(e, ev.Paused) for e in events_of(run)), "pause", proc)
    return client


def readme_multi_node(*args: str) -> list[str]:
    """README's torchrun line for several machines, with --nnodes 1: the c10d rendezvous path."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "readme",
            "-m", "engine", *DATA, *args]  # fmt: skip


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_two_processes_train_one_run_and_evaluate_exactly(
    tmp_path: Path, project_env: dict[str, str], loader: str
) -> None:
    """Through ``--nproc 2`` (the tensor loader) and through the README's multi-node torchrun line
    (the DataLoader; merged here from a test of its own, to save a two-rank launch)."""
    run = tmp_path / "run"
    launch = engine if loader == "tensor" else readme_multi_node
    out = subprocess.run(launch(*LEARNING, "--epochs", "2", "--run-dir", str(run), "--loader", loader, "--workers", "1"),
                         capture_output=True, text=True, env=project_env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"loader {loader}" in out.stdout
    events = read_events(run)
    started = [e for e in events if isinstance(e, ev.RunStarted)]
    assert len(started) == 1 and started[0].world_size == 2  # rank 0 alone writes the run
    assert out.stdout.count("recipe tutorial |") == 1 and "2 processes" in out.stdout  # and speaks
    assert isinstance(events[-1], ev.Finished) and events[-1].reason == "completed"
    assert any(isinstance(e, ev.Log) and e.message == "2 ranks hold identical weights" for e in events)
    final = [e for e in events if isinstance(e, ev.Evaluation)][-1]
    assert final.accuracy > 0.3  # it learned (chance: 10%)
    # The sharded, all-reduced evaluation is exactly a one-process evaluation of the saved model.
    cfg = from_recipe("tutorial", data="demo", weights="none", train_limit=512, test_limit=200, device="cpu",
                      run_dir=str(tmp_path / "unused"))  # fmt: skip
    data = load_data(cfg, lambda _kind, _text: None)
    model = build_model(cfg, len(data.class_names), lambda _kind, _text: None)
    model.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    alone = evaluate(model, TensorBatches(data.test, 500, torch.device("cpu"), 0, train=False), len(data.class_names))
    assert alone.confusion == final.confusion and alone.per_class == final.per_class
    # The mistakes gallery holds both ranks' shares: every mistake of the evaluation, each once.
    gallery = read_gallery(run)
    assert gallery is not None and gallery.total_wrong == 200 - sum(final.confusion[i][i] for i in range(10))
    assert len({m.index for m in gallery.mistakes}) == len(gallery.mistakes) == gallery.total_wrong
    if loader == "dataloader":
        return
    # Another world size: the two-rank checkpoint goes on in one process (not bit-exact: the
    # batches' split differs). (Merged here from a test of its own, to save a two-rank launch.)
    one = subprocess.run([sys.executable, "-m", "engine", "--resume", str(run / "checkpoints" / "last.pt"),
                          "--epochs", "3"], capture_output=True, text=True, env=project_env, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    starts = [e for e in read_events(run) if isinstance(e, ev.RunStarted)]
    assert [s.world_size for s in starts] == [2, 1] and starts[1].start_epoch == 2
    finished = read_events(run)[-1]
    assert isinstance(finished, ev.Finished) and finished.reason == "completed" and finished.epochs_done == 3


def test_a_killed_rank_ends_the_run_with_a_clear_failure_and_a_good_checkpoint(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    """With the DataLoader, rank 0 may first see its workers stopped by torchrun: still named. (The
    tensor loader's case, once a test of its own, is the first failure of the max-restarts test.)"""

    run = tmp_path / "run"
    proc = subprocess.Popen(engine("--epochs", "500", "--run-dir", str(run), "--loader", "dataloader"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        wait_for(lambda: any(isinstance(e, ev.CheckpointSaved) for e in events_of(run)), "a checkpoint", proc)
        ranks = rank_processes(proc.pid, "1")
        assert len(ranks) == 1
        ranks[0].kill()
        _, err = proc.communicate(timeout=120)  # nothing hangs: the others are stopped
    finally:
        end_tree(proc.pid)
    assert proc.returncode == 1
    assert "rank 1 ended first (killed by signal 9)" in err and "Traceback" not in err
    failed = [e for e in read_events(run) if isinstance(e, ev.Failed)]
    assert failed and failed[-1].error == "rank_lost" and "last good checkpoint" in failed[-1].message
    assert failed[-1].message.startswith("rank 1 stopped answering")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["global_step"] > 0


def test_what_cannot_run_as_several_processes_is_refused_before_any_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Through each entry point: python -m engine, cifar-tui, cifar-tui serve."""
    from engine.cli import main as engine_main
    from tui.cli import main as cifar_tui

    mains: list[Callable[[list[str]], int]] = [engine_main, cifar_tui, lambda argv: cifar_tui(["serve", *argv])]
    for options, message in (
        (["--nproc", "4", "--batch-size", "6"], "--batch-size 6 is too small for --nproc 4"),
        (["--nproc", "0"], "--nproc must be between 1 and 1024"),
        (["--nproc", "2", "--rank-timeout", "0"], "--rank-timeout must be"),
        (["--nproc", "2", "--device", "cpu", "--sync-bn", "on"], "--sync-bn needs CUDA GPUs"),
        (["--nproc", "many"], "--nproc must be a number or auto"),
        (["--nproc", "2", "--max-restarts", "-1"], "--max-restarts must be between 0 and 100"),
    ):
        for main in mains:
            assert main(["--data", "demo", "--run-dir", str(tmp_path / "run"), *options]) == 2, options
            err = capsys.readouterr().err
            assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_max_restarts_brings_a_killed_rank_back_and_the_run_goes_on_from_its_checkpoint(
    tmp_path: Path, project_env: dict[str, str]
) -> None:

    run = tmp_path / "run"
    proc = subprocess.Popen(engine("--max-restarts", "1", "--epochs", "4", "--run-dir", str(run)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        wait_for(lambda: any(isinstance(e, ev.CheckpointSaved) for e in events_of(run)), "a checkpoint", proc)
        [rank1] = rank_processes(proc.pid, "1")
        rank1.kill()
        _, err = proc.communicate(timeout=300)
    finally:
        end_tree(proc.pid)
    assert proc.returncode == 0, err[-2000:]
    events = read_events(run)
    kinds = [e.kind for e in events]
    assert "failed" in kinds and kinds[-1] == "finished"
    # The kill is said as it is without restarts: rank 1 named, the last good checkpoint given.
    failed = [e for e in events if isinstance(e, ev.Failed)]
    assert len(failed) == 1 and failed[0].error == "rank_lost" and "last good checkpoint" in failed[0].message
    assert failed[0].message.startswith("rank 1 stopped answering")
    starts = [e for e in events if isinstance(e, ev.RunStarted)]
    assert len(starts) == 2 and starts[1].resumed_from.endswith("last.pt") and starts[1].start_epoch >= 1
    finished = events[-1]
    assert isinstance(finished, ev.Finished) and finished.reason == "completed" and finished.epochs_done == 4


def test_a_rank_whose_loss_becomes_nan_fails_the_run_naming_it(tmp_path: Path, project_env: dict[str, str]) -> None:
    """Rank 1 alone diverges (its loss NaN from step 13): the run's failure names rank 1 and why."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "engine.ranks.torchrun", "--standalone", "--nproc-per-node=2",
               "-m", "tests.helpers.rank_harness", "diverge-after-12", *DATA, "--epochs", "500", "--run-dir", str(run)]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=project_env, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr.replace("Traceback (most recent call", "")
    failed = [e for e in read_events(run) if isinstance(e, ev.Failed)]
    assert len(failed) == 1 and failed[0].error == "diverged"
    assert failed[0].message.startswith("rank 1 failed: training diverged: loss became nan at epoch 2, step 5")
    assert failed[0].message.endswith("last good checkpoint: " + str(run / "checkpoints" / "step-00000008.pt"))
    weights = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_rank_that_hangs_fails_the_run_after_the_rank_timeout(tmp_path: Path, project_env: dict[str, str]) -> None:
    """Rank 1 stopped (SIGSTOP: alive, silent): rank 0 gives up after --rank-timeout, names it, and
    torchrun ends the group; nothing is left hanging. (A process deaf to SIGTERM, as a stopped one
    is, gets torchrun's SIGKILL after its 30 s grace; once the failure is recorded the test lets
    rank 1 go on so that torchrun's SIGTERM ends it, to keep the suite short.)"""
    import signal

    run = tmp_path / "run"
    proc = subprocess.Popen(engine("--epochs", "500", "--run-dir", str(run), "--rank-timeout", "5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        wait_for(lambda: any(isinstance(e, ev.CheckpointSaved) for e in events_of(run)), "a checkpoint", proc)
        ranks = rank_processes(proc.pid, "1")
        assert len(ranks) == 1
        ranks[0].send_signal(signal.SIGSTOP)
        wait_for(lambda: any(isinstance(e, ev.Failed) for e in events_of(run)), "the failure", proc)
        ranks[0].send_signal(signal.SIGCONT)
        proc.communicate(timeout=240)
    finally:
        end_tree(proc.pid)
    assert proc.returncode == 1 and not ranks[0].is_running()
    failed = [e for e in read_events(run) if isinstance(e, ev.Failed)]
    assert failed and failed[-1].error == "rank_lost"
    assert failed[-1].message.startswith("rank 1 stopped answering") and "last good checkpoint" in failed[-1].message
    assert load_checkpoint(run / "checkpoints" / "last.pt")["global_step"] > 0


def test_compile_with_two_ranks_compiles_once_and_never_again(tmp_path: Path, project_env: dict[str, str]) -> None:
    """--compile under DDP (PyTorch's compiled-DDP path, a counting backend instead of a C compiler):
    it learns, the ranks agree, and no graph is compiled after the first epoch, the ragged
    evaluation batch (200 test images in batches of 64) included."""
    import re

    run = tmp_path / "run"
    command = [sys.executable, "-m", "engine.ranks.torchrun", "--standalone", "--nproc-per-node=2",
               "-m", "tests.helpers.rank_harness", "compile-counted", *DATA, *LEARNING, "--epochs", "2", "--run-dir", str(run),
               "--compile", "on", "--eval-batch-size", "64"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=project_env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    counts: dict[str, list[tuple[int, int]]] = {}
    for rank, step, graphs in re.findall(r"rank (\d) after evaluation at step (\d+): (\d+) graphs", out.stderr):
        counts.setdefault(rank, []).append((int(step), int(graphs)))
    assert [s for s, _ in counts["0"]] == [s for s, _ in counts["1"]] == [8, 16]
    assert len({g for c in counts.values() for _, g in c}) == 1  # the same graphs, from the first epoch on
    events = read_events(run)
    logs = [e.message for e in events if isinstance(e, ev.Log)]
    assert sum("training step compiled in" in m for m in logs) == 1 and "2 ranks hold identical weights" in logs
    assert sum("evaluation compiled in" in m for m in logs) == 1
    assert [e for e in events if isinstance(e, ev.Evaluation)][-1].accuracy > 0.3


def test_the_dashboard_steers_both_ranks_in_a_real_terminal_and_exits_as_the_run_ended(tmp_path: Path) -> None:
    """``cifar-tui --nproc 2`` in a pty: `p` pauses and resumes both ranks; when a rank is killed
    the dashboard shows the failure and `q` exits 1, as a one-process run that failed would."""
    import os

    from tests.helpers.pty_app import PtyApp, count_in_events
    from tests.helpers.waiting import wait_until

    run = tmp_path / "run"
    app = PtyApp(["--nproc", "2", *DATA, "--epochs", "500", "--run-dir", str(run)])

    def until(cond: Callable[[], bool], what: str) -> None:
        try:
            wait_until(cond, what=what)
        except AssertionError as failed:  # what the dashboard said, to tell a lost key from a lost act
            raise AssertionError(f"{failed}; the terminal's last words: {app.said(2000)!r}") from None

    try:
        until(lambda: count_in_events(run, '"kind":"checkpoint_saved"') > 0, "a checkpoint")
        until(lambda: b"progress" in app.output, "the attached dashboard to draw")
        os.write(app.master, b"p")
        until(lambda: count_in_events(run, '"kind":"paused"') == 1, "the pause")
        os.write(app.master, b"p")
        until(lambda: count_in_events(run, '"kind":"resumed"') == 1, "the resume")
        [rank1] = rank_processes(app.pid, "1")
        rank1.kill()
        until(lambda: count_in_events(run, '"kind":"failed"') == 1, "the failure")
        until(lambda: b"stopped answering" in app.output, "the failure on screen")
        os.write(app.master, b"q")
        assert app.wait() == 1
    finally:
        end_tree(app.pid)  # the ranks run in their own session: a failed test leaves none training
        app.kill()
    assert "rank 1 stopped answering" in app.said()
    paused = next(e for e in read_events(run) if isinstance(e, ev.Paused))
    resumed = next(e for e in read_events(run) if isinstance(e, ev.Resumed))
    assert resumed.global_step == paused.global_step  # no rank stepped while paused


def test_each_rank_trains_the_config_the_launcher_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher resolves and checks the config once; every rank reads that config (with the
    one run directory the launcher fixed), not a command line parsed again; a rank that torchrun
    restarts goes on from the run's last checkpoint."""
    from engine.ranks.plan import launch_run_dir, rank_config, rank_environment
    from engine.run.config import from_recipe

    cfg = from_recipe("tutorial", data="demo", epochs=3, runs_root=str(tmp_path))
    env = rank_environment(cfg.with_overrides(run_dir=launch_run_dir(cfg)))
    for name in ("WORLD_SIZE", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIFAR_TUI_RANK_CONFIG", env["CIFAR_TUI_RANK_CONFIG"])
    assert rank_config() is None  # not a rank of a launch
    monkeypatch.setenv("WORLD_SIZE", "2")
    given = rank_config()
    assert given is not None and given.epochs == 3 and given.explicit == cfg.explicit
    assert given.run_dir and Path(given.run_dir).parent == tmp_path
    assert given.with_overrides(run_dir="") == cfg
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    restarted = rank_config()
    assert restarted is not None and restarted.overwrite and not restarted.resume  # nothing saved yet
    last = Path(given.run_dir) / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    restarted = rank_config()
    assert restarted is not None and restarted.resume == str(last)


def test_an_ssh_drop_saves_and_stops_the_ranks_the_dashboard_launched(tmp_path: Path) -> None:
    """``cifar-tui --nproc 2`` owns its run as one process's dashboard does: when the terminal
    goes (the SSH link drops) every rank saves and stops, and nothing is left training."""
    import signal

    from tests.helpers.pty_app import PtyApp, count_in_events
    from tests.helpers.waiting import wait_until

    run = tmp_path / "run"
    app = PtyApp(["--nproc", "2", *DATA, "--epochs", "500", "--run-dir", str(run)])
    try:
        wait_until(lambda: count_in_events(run, '"kind":"checkpoint_saved"') > 0, what="a checkpoint")
        ranks = rank_processes(app.pid, "0") + rank_processes(app.pid, "1")
        assert len(ranks) == 2
        app.hang_up()
        assert app.wait() == 128 + signal.SIGHUP
        wait_until(lambda: not any(p.is_running() and p.status() != "zombie" for p in ranks), what="the ranks to end")
    finally:
        end_tree(app.pid)
        app.kill()
    last = read_events(run)[-1]
    assert isinstance(last, ev.Finished) and last.reason == "stopped"
    assert load_checkpoint(Path(last.checkpoint))["global_step"] == last.global_step > 0


def test_serve_starts_the_ranks_and_serves_their_run(tmp_path: Path, project_env: dict[str, str]) -> None:
    """``cifar-tui serve --nproc 2 ...``: the ranks start in the background and their run is served."""
    import signal

    from tests.helpers.browser import free_port, status

    run = tmp_path / "run"
    command = [sys.executable, "-m", "tui.cli", "serve", "--port", str(free_port()), "--nproc", "2", *DATA,
               "--epochs", "200", "--run-dir", str(run)]  # fmt: skip

    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env)
    launched: list[psutil.Process] = []
    try:
        assert server.stdout is not None
        url = next((line.split(" at ", 1)[1].strip() for line in server.stdout if "?token=" in line), "")
        assert url, server.stderr.read() if server.stderr else ""
        launched = psutil.Process(server.pid).children(recursive=True)  # they outlive the server
        assert status(url) == 200
        assert [e.world_size for e in read_events(run) if isinstance(e, ev.RunStarted)] == [2]
        server.send_signal(signal.SIGINT)  # closing the server leaves training, as with one process
        server.wait(timeout=60)
        client = ControlClient(Path(json.loads((run / TRAINER_FILE).read_text())["socket"]), timeout=30)
        assert client.send("stop")["ok"]
        wait_until_ended = time.monotonic() + 120
        while not any(isinstance(e, ev.Finished) for e in events_of(run)):
            assert time.monotonic() < wait_until_ended, "the ranks did not stop"
            time.sleep(0.1)
    finally:
        end_tree(server.pid)
        for p in launched:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    assert any(e.message == "2 ranks hold identical weights" for e in read_events(run) if isinstance(e, ev.Log))


def test_steering_then_a_stop_mid_epoch_resume_exactly_on_both_ranks(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    """A steered run, evaluated while paused and saved mid-way, goes on from the copy in another
    folder; that one is stopped mid-epoch and resumed in place: it ends with the weights of the run
    never stopped. (Merged from three tests, a steered resume, a plain stop and resume, and pause,
    evaluate, save and stop on both ranks, to save three two-rank launches.)"""
    straight, steered_ckpt = tmp_path / "straight", tmp_path / "steered.pt"
    proc = subprocess.Popen(engine("--epochs", "2", "--schedule", "cosine", "--run-dir", str(straight)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        client = paused_at_a_step(straight, proc)
        # The dashboard counts the GPU memory of these processes as the run's: both ranks, not the launcher.
        started = next(e for e in events_of(straight) if isinstance(e, ev.RunStarted))
        ranks = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert len(set(started.pids)) == 2 and set(started.pids) <= ranks
        assert client.send("evaluate")["ok"]
        for act in (parse_lr_scale("0.5", COMMAND_LINE), parse_epochs("3", COMMAND_LINE)):
            assert client.send("steer", steer=act)["ok"]
        wait_for(lambda: sum(isinstance(e, ev.Steered) for e in events_of(straight)) == 2, "the acts", proc)
        wait_for(lambda: any(isinstance(e, ev.Evaluation) and e.reason == "request" for e in events_of(straight)),
                 "the requested evaluation", proc)  # fmt: skip
        assert client.send("save")["ok"]  # the steered run as it is now: where the copy resumes from
        wait_for(lambda: any(isinstance(e, ev.CheckpointSaved) and e.reason == "request"
                             for e in events_of(straight)), "the checkpoint", proc)  # fmt: skip
        saved = next(e for e in events_of(straight) if isinstance(e, ev.CheckpointSaved) and e.reason == "request")
        shutil.copy(saved.path, steered_ckpt)
        assert client.send("resume")["ok"]
        assert proc.wait(timeout=300) == 0  # goes on, steered, to the end without a stop
    finally:
        end_tree(proc.pid)
    events = read_events(straight)
    acts = [e for e in events if isinstance(e, ev.Steered)]
    assert [(e.what, e.new, e.refused) for e in acts] == [("lr_scale", 0.5, ""), ("epochs", 3.0, "")]
    paused = next(e for e in events if isinstance(e, ev.Paused))
    requested = [e for e in events if isinstance(e, ev.Evaluation) and e.reason == "request"]
    assert requested and requested[0].global_step == paused.global_step  # evaluated while paused
    # The copy goes on in a folder of its own, and is stopped (saving) at a step of its own.
    run = tmp_path / "run"
    proc = subprocess.Popen(engine("--resume", str(steered_ckpt), "--run-dir", str(run)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    try:
        client = paused_at_a_step(run, proc)
        assert client.send("stop_save")["ok"]
        assert proc.wait(timeout=120) == 130
    finally:
        end_tree(proc.pid)
    events = read_events(run)
    assert isinstance(events[-1], ev.Finished) and events[-1].reason == "stopped"
    assert any(isinstance(e, ev.CheckpointSaved) and e.reason == "stop" for e in events)
    # Both ranks took every step together: after the stop their weights are still the same.
    assert any(isinstance(e, ev.Log) and e.message == "2 ranks hold identical weights" for e in events)
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")
    assert stopped["global_step"] < 24  # stopped before the end (3 epochs of 8 steps)
    resumed = subprocess.run([sys.executable, "-m", "engine", "--nproc", "2", "--resume", str(run / "checkpoints" / "last.pt")],
                             capture_output=True, text=True, env=project_env, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # It went on from the stop (into the same run directory), not from scratch.
    again = [e for e in read_events(run) if isinstance(e, ev.RunStarted)][-1]
    assert again.resumed_from and (again.start_epoch, again.start_step) == (stopped["epoch"], stopped["step"])
    assert again.world_size == 2
    for folder in (straight, run):
        logs = [e.message for e in read_events(folder) if isinstance(e, ev.Log)]
        assert "2 ranks hold identical weights" in logs  # every rank took each act at the same step
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(run / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 24 and b["steering"]["lr_scale"] == 0.5
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), [
        k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])
    ][:5]
