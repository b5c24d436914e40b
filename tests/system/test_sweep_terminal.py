"""``cifar-tui sweep`` in a real pty: the screen starts the sweep, and a dropped link stops it,
the running trial saving, as a dashboard's run does."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.common import pid_alive
from tests.helpers.pty_app import PtyApp, count_in_events
from tests.helpers.waiting import wait_until
from tui.sweep_view import read_sweep

TINY = ["--data", "demo", "--weights", "none", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
        "--device", "cpu", "--loader", "tensor"]  # fmt: skip


def test_a_dropped_link_stops_the_sweep_the_screen_started_and_its_trial_saves(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    app = PtyApp(["sweep", "drop", "--runs-root", str(runs), *TINY, "--epochs", "500", "--sampler", "grid",
                  "--pruner", "none", "--space", "lr=choice:0.01,0.02", "--trials", "2"])  # fmt: skip
    trial = runs / "drop-t000"
    try:
        wait_until(lambda: count_in_events(trial, '"kind":"progress"') > 0 or app.poll() is not None,
                   what="the first trial training")  # fmt: skip
        assert app.poll() is None, app.output[-2000:]
        # The screen shows the trial as the sweep's file has it.
        wait_until(lambda: b"drop" in app.output and b"running" in app.output, what="the screen drawn")
        view = read_sweep(runs / "drop.sweep")
        assert view is not None and view.running() and view.pid is not None
        sweep_pid, trainer_pid = view.pid, json.loads((trial / "trainer.json").read_text())["pid"]
        app.hang_up()
        app.wait()
        # The sweep stops: its trial saves and stops; nothing trains on without a screen.
        wait_until(
            lambda: not pid_alive(sweep_pid) and not pid_alive(trainer_pid), what="the sweep and its trial to stop"
        )
    finally:
        app.kill()
    assert (trial / "checkpoints" / "last.pt").is_file()
    ends = [json.loads(line) for line in (trial / "events.jsonl").read_text().splitlines() if '"finished"' in line]
    assert ends and ends[-1]["reason"] == "stopped"
    left = read_sweep(runs / "drop.sweep")
    assert left is not None and not left.live
    assert [t.state for t in left.trials] == ["interrupted"]  # tried again, with its values, by the same command
    assert "stopped; the running trials saved" in (runs / "drop.sweep" / "sweep.log").read_text()
