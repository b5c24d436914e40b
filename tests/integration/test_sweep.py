"""Sweeps on Optuna, as a user runs them: trials are real runs in child processes, pruned through
their control sockets, failed with a cause, and counted exactly across a kill and a restart."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.common import pid_alive
from tests.helpers.postgres import postgres_server
from tests.helpers.waiting import wait_until

# Trials as small as a run gets: two steps an epoch; a trial's cost is its process's start.
TINY = ["--data", "demo", "--weights", "none", "--train-limit", "32", "--test-limit", "32", "--batch-size", "16",
        "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def sweep(runs: Path, name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", "sweep", name, "--runs-root", str(runs), *TINY, *args]


def cli(project_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True,
                          env=project_env, timeout=600)  # fmt: skip


def trials(runs: Path, name: str, every: bool = False) -> list[dict[str, Any]]:
    """The study as Optuna holds it, read in this process: the trials that count toward
    ``--trials`` (``every``: replaced ones too, interrupted, surplus or retried)."""
    from engine.sweep.cli import read_plan
    from engine.sweep.storage import open_study
    from engine.sweep.trials import counted

    plan = read_plan(runs / f"{name}.sweep")
    assert plan is not None
    held = open_study(plan).get_trials(deepcopy=False)
    return [
        {"number": t.number, "state": t.state.name, "params": t.params, **t.user_attrs}
        for t in (held if every else counted(held))
    ]


def run_states(project_env: dict[str, str], runs: Path) -> dict[str, str]:
    listed = cli(project_env, "runs", "--runs-root", str(runs), "--json")
    assert listed.returncode == 0, listed.stderr
    return {Path(r["path"]).name: r["state"] for r in json.loads(listed.stdout)}


def test_a_trial_worse_than_the_one_before_is_pruned_and_listed_as_pruned(tmp_path: Path,
                                                                          project_env: dict[str, str]) -> None:  # fmt: skip
    runs = tmp_path / "runs"
    # A grid of two rates, in the grid's order for seed 0: the good one first, then one that
    # learns nothing. Successive halving's first rung is the first epoch (its minimum resource is
    # 1 for 3-epoch trials): the second trial, below the first there, is cut. (0.005 on 128 images
    # is at 23% after one epoch, the untrained model at 8%: a rate that learns but not at once,
    # 0.05, ties with it and is not cut.)
    out = subprocess.run(sweep(runs, "prune", "--train-limit", "128", "--test-limit", "64", "--epochs", "3", "--sampler", "grid", "--pruner", "asha",
                               "--space", "lr=choice:1e-9,0.005", "--trials", "2", "--headless"),
                         capture_output=True, text=True, env=project_env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    held = sorted(trials(runs, "prune"), key=lambda t: t["number"])
    assert [t["params"] for t in held] == [{"lr": "0.005"}, {"lr": "1e-9"}], "the grid's order changed"
    assert [t["state"] for t in held] == ["COMPLETE", "PRUNED"]
    assert held[0]["epochs"] == 3 and held[1]["epochs"] < 3
    # One line per finished trial, then the table; the pruned trial is an ordinary run that saved.
    assert (
        f"trial 1 pruned after {held[1]['epochs']} epochs" in out.stdout
        and "trial 0 completed after 3 epochs" in out.stdout
    )
    states = run_states(project_env, runs)
    assert states == {"prune-t000": "finished", "prune-t001": "pruned"}
    assert (runs / "prune-t001" / "checkpoints" / "last.pt").is_file()
    pruned = cli(project_env, "runs", "--runs-root", str(runs), "--state", "pruned").stdout
    assert "prune-t001" in pruned and "prune-t000" not in pruned
    # --status: the table again, from the study alone, nothing started.
    status = cli(project_env, "sweep", "prune", "--runs-root", str(runs), "--status")
    assert status.returncode == 0 and "2 trials (2 asked)" in status.stdout
    assert status.stdout.index("trial 0 completed") < status.stdout.index("trial 1 pruned")  # best first
    # export: the trials table as CSV, and the best trial's run as any run's.
    out = tmp_path / "out"
    exported = cli(project_env, "export", str(runs / "prune.sweep"), "--csv", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    with (out / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["state"], r["lr"], r["run"]) for r in rows] == [
        ("0", "completed", "0.005", "prune-t000"),
        ("1", "pruned", "1e-9", "prune-t001"),
    ]
    with (out / "epochs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 3  # the best trial's three epochs
    # The sweep screen's file, as the sweep left it: the same trials, best first, not live.
    from tui.sweep_view import read_sweep

    view = read_sweep(runs / "prune.sweep")
    assert view is not None and not view.live and not view.running()
    assert [(t.number, t.state, t.params, t.epochs) for t in view.trials] == [
        (0, "completed", {"lr": "0.005"}, 3), (1, "pruned", {"lr": "1e-9"}, held[1]["epochs"])]  # fmt: skip
    assert view.trials[0].best == held[0]["best_accuracy"] and len(view.trials[0].curve) == 3
    # --seeds on the sweep as it stands: the best trial again with seed 1, its own run as seed 0.
    seeded = cli(project_env, "sweep", "prune", "--runs-root", str(runs), "--seeds", "2", "--top", "1")
    assert seeded.returncode == 0, seeded.stderr
    again = json.loads((runs / "prune-t000-s1" / "config.json").read_text())
    assert again["seed"] == 1 and again["lr"] == 0.005 and again["epochs"] == 3
    record = json.loads((runs / "prune.sweep" / "seeds.json").read_text())["trials"]
    assert [t["number"] for t in record] == [0] and sorted(record[0]["results"]) == ["0", "1"]
    mean = (record[0]["results"]["0"] + record[0]["results"]["1"]) / 2
    assert f"trial 0: {mean:.2%} ± " in seeded.stdout and "over 2 of 2 seeds" in seeded.stdout
    assert "verdict: one trial has seed results" in seeded.stdout


def test_the_sweep_screens_keys_pause_prune_and_stop_a_real_trial(tmp_path: Path,
                                                                 project_env: dict[str, str]) -> None:  # fmt: skip
    """p, x and s on the sweep screen act on the highlighted trial's run: paused and resumed; pruned
    (the study says PRUNED, as if Optuna had cut it); stopped (failed, with that cause) while the
    sweep goes on with the next trial."""
    from tui.sweep_keys import act_on_trial
    from tui.sweep_view import read_sweep

    runs = tmp_path / "runs"
    proc = subprocess.Popen(sweep(runs, "keys", "--epochs", "500", "--sampler", "grid", "--pruner", "none",
                                  "--space", "lr=choice:0.01,0.02", "--trials", "2", "--headless"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip

    def running_trial(number: int) -> Path:
        def up() -> bool:
            view = read_sweep(runs / "keys.sweep")
            trial = next((t for t in view.trials if t.number == number), None) if view else None
            return trial is not None and trial.state == "running" and (Path(trial.run_dir) / "trainer.json").is_file()

        wait_until(up, what=f"trial {number} running (the screen's file says so)", process=proc)
        return runs / f"keys-t{number:03d}"

    def state(run: Path) -> str:
        return run_states(project_env, runs).get(run.name, "?")

    first = running_trial(0)
    assert act_on_trial(first, "pause") == ("pause: asked; it acts at the next batch", True)
    wait_until(lambda: state(first) == "paused", what="trial 0 paused", process=proc)
    assert act_on_trial(first, "pause")[1]  # again: resume
    wait_until(lambda: state(first) == "running", what="trial 0 resumed", process=proc)
    assert act_on_trial(first, "prune")[1]
    second = running_trial(1)
    assert act_on_trial(second, "stop")[1]
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    held = {t["number"]: t for t in trials(runs, "keys")}
    assert held[0]["state"] == "PRUNED" and held[1]["state"] == "FAIL"
    assert held[1]["cause"] == "stopped from the sweep screen" and "stopped from the sweep screen" in out
    assert run_states(project_env, runs) == {"keys-t000": "pruned", "keys-t001": "stopped"}
    assert act_on_trial(second, "pause")[1] is False  # an ended run: said, not sent


def test_a_diverging_and_a_killed_trial_fail_with_their_cause_and_the_sweep_goes_on(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    runs = tmp_path / "runs"
    # (4 steps an epoch: a forked trial trains within a second of its start, and the kill below
    # must land before its 8 steps are done)
    proc = subprocess.Popen(sweep(runs, "faults", "--epochs", "2", "--train-limit", "64", "--sampler", "grid",
                                  "--pruner", "none", "--space", "lr=choice:0.01,100,0.02", "--trials", "3",
                                  "--parallel", "2", "--headless"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project_env)  # fmt: skip
    # Kill the trial that trains at 0.02 as soon as its trainer is up: SIGKILL, no chance to save.
    # Its run folder is found by a glob and its config, not through the study (a storage read a
    # poll: slow enough on a loaded machine to miss a whole trial).
    killed: list[Path] = []

    def kill_the_trial_at_002() -> bool:
        for info in runs.glob("faults-t*/trainer.json"):
            if json.loads((info.parent / "config.json").read_text())["lr"] == 0.02:
                os.kill(json.loads(info.read_text())["pid"], signal.SIGKILL)
                killed.append(info.parent)
                return True
        return False

    wait_until(kill_the_trial_at_002, what="the trial at lr 0.02 to start", process=proc)
    assert '"finished"' not in (killed[0] / "events.jsonl").read_text()  # it was killed mid-run, not after
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    held = {t["params"]["lr"]: t for t in trials(runs, "faults")}
    assert held["0.02"]["state"] == "FAIL" and held["0.02"]["cause"] == "killed by SIGKILL"
    assert held["100"]["state"] == "FAIL" and "training diverged" in str(held["100"]["cause"]), held["100"]
    assert held["0.01"]["state"] == "COMPLETE" and held["0.01"]["epochs"] == 2
    assert "trial" in out and "killed by SIGKILL" in out
    # Nothing left running: the study has no running trial, the runs list none.
    assert all(t["state"] != "RUNNING" for t in held.values())
    assert "running" not in run_states(project_env, runs).values()


def test_ctrl_c_then_a_kill_and_the_same_command_finishes_the_exact_count(tmp_path: Path,
                                                                          project_env: dict[str, str]) -> None:  # fmt: skip
    runs = tmp_path / "runs"
    # (2 epochs of 8 steps: each stop lands while both trials train)
    command = sweep(runs, "again", "--epochs", "2", "--train-limit", "128", "--space", "lr=log:0.01..0.1", "--trials",
                    "2", "--parallel", "2", "--heartbeat", "2", "--pruner", "none", "--headless")  # fmt: skip
    seen: set[Path] = set()

    def two_new_trainers(process: subprocess.Popen[bytes]) -> list[int]:
        """Wait for two trials this sweep started to be training; their trainers' pids."""
        found: dict[Path, int] = {}

        def up() -> bool:  # (a trainer with a step behind it: it has something to save)
            for info in runs.glob("again-t*/trainer.json"):
                events = info.parent / "events.jsonl"
                if info.parent not in seen | set(found) and '"progress"' in events.read_text():
                    found[info.parent] = json.loads(info.read_text())["pid"]
            return len(found) >= 2

        wait_until(up, what="two trials training", process=process)
        seen.update(found)
        return list(found.values())

    # Ctrl-C: the running trials save and stop, the sweep says how to go on and exits 130.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=project_env)
    two_new_trainers(first)
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130 and b"The same command goes on" in out
    states = run_states(project_env, runs)
    assert list(states.values()) == ["stopped", "stopped"], states
    for name in states:
        assert (runs / name / "checkpoints" / "last.pt").is_file(), sorted(p.name for p in (runs / name).rglob("*"))
    # The same command again, killed (SIGKILL, as a lost box): its trials do not train on alone.
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=project_env)
    trainers = two_new_trainers(second)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=60)
    wait_until(lambda: not any(pid_alive(p) for p in trainers), what="the orphaned trials to stop")
    # And again: it finishes. Exactly two count, both completed; the two Ctrl-C stopped and the
    # two the kill left running (failed by Optuna's heartbeat check) were tried with their values.
    again = subprocess.run(command, capture_output=True, text=True, env=project_env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "2 trials (2 asked)" in again.stdout
    every = trials(runs, "again", every=True)
    assert all(t["state"] != "RUNNING" for t in every)
    held = trials(runs, "again")
    assert len(held) == 2 and all(t["state"] == "COMPLETE" for t in held)
    cut_short = [t for t in every if t["state"] == "FAIL" and t["params"]]
    assert len(cut_short) == 4
    assert {t["params"]["lr"] for t in cut_short} == {t["params"]["lr"] for t in held}


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_two_workers_on_one_storage_never_run_a_trial_twice_and_stop_at_the_count(
    storage: str, tmp_path: Path, project_env: dict[str, str]
) -> None:
    with contextlib.ExitStack() as stack:
        url = (f"journal:{tmp_path / 'study.journal'}" if storage == "journal"
               else stack.enter_context(postgres_server()))  # fmt: skip
        # Two boxes: each its own runs folder, one study both reach.
        boxes = [tmp_path / "box-a", tmp_path / "box-b"]
        args = ["--epochs", "1", "--sampler", "random", "--space", "lr=log:0.01..0.1", "--trials", "3",
                "--storage", url, "--headless"]  # fmt: skip
        workers = [subprocess.Popen(sweep(box, "shared", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=project_env) for box in boxes]  # fmt: skip
        outs = [w.communicate(timeout=600) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs
        from engine.sweep.cli import read_plan
        from engine.sweep.storage import open_study
        from engine.sweep.trials import counted

        plan = read_plan(boxes[0] / "shared.sweep")
        assert plan is not None
        held = counted(open_study(plan).get_trials(deepcopy=False))
        assert sorted(t.number for t in held) == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in held)
        # Each trial ran once, on one box: one run folder per trial number across both.
        ran = sorted(p.name for box in boxes for p in box.glob("shared-t*") if p.is_dir())
        assert ran == ["shared-t000", "shared-t001", "shared-t002"]
        lines = [line for out, _ in outs for line in out.splitlines() if line.startswith("trial ")]
        assert sorted(line.split()[1] for line in lines) == ["0", "1", "2"], outs
