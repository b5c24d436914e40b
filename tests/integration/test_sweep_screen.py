"""The sweep screen, fed by a sweep's trials file: what it shows at 80x24 and 160x50, its plots,
its keys (open a trial's run, compare the best, quit a sweep it owns)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.common import screen_text
from tests.helpers.sweep_file import write_sweep_file
from tests.helpers.waiting import app_until
from tui.screens.sweep import SweepScreen
from tui.sweep_app import SweepApp
from tui.sweep_view import best_so_far, by_param, read_sweep


def screen(app: SweepApp) -> SweepScreen:
    found = app.screen_stack[1] if len(app.screen_stack) > 1 else app.screen
    assert isinstance(found, SweepScreen)
    return found


async def loaded(pilot) -> None:  # type: ignore[no-untyped-def]
    await app_until(pilot, lambda: len(pilot.app.screen_stack) > 1 and screen(pilot.app).view is not None)
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_the_sweep_screen_at_two_sizes(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    folder = write_sweep_file(tmp_path / "runs")
    assert snap_compare(SweepApp(folder), terminal_size=size, run_before=loaded)


def test_accuracy_against_a_log_range(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = write_sweep_file(tmp_path / "runs")

    async def lr_plot(pilot) -> None:  # type: ignore[no-untyped-def]
        await loaded(pilot)
        await pilot.press("v")
        await pilot.pause()

    assert snap_compare(SweepApp(folder), terminal_size=(120, 36), run_before=lr_plot)


def test_the_file_read_back_best_so_far_and_points_by_value(tmp_path: Path) -> None:
    view = read_sweep(write_sweep_file(tmp_path / "runs"))
    assert view is not None
    assert [t.number for t in view.trials] == [2, 0, 4, 1, 3] and view.best() is not None
    assert view.best().number == 2  # type: ignore[union-attr]
    # Ended trials in the order they ended: t1 (70 s, 21%), t0 (180 s, 61%), t3 (failed, no
    # accuracy: left out), t2 (240 s, 66%); the line only ever goes up.
    assert [(round(x, 2), round(y, 1)) for x, y in best_so_far(view.trials)] == [(1.17, 21.0), (3.0, 61.0),
                                                                                    (4.0, 66.0)]  # fmt: skip
    points = by_param(view.trials, "lr")
    assert points["completed"] == [(0.12, 66.0), (0.05, 61.0)] and points["pruned"] == [(0.7, 21.0)]
    assert "failed" not in points and points["running"] == [(0.31, 55.00000000000001)]
    assert view.is_log("lr") and view.is_choice("cutout") and not view.running()
    (view_folder := tmp_path / "runs" / "demo.sweep").joinpath("trials.json").write_text('{"name": ')
    assert read_sweep(view_folder) is None  # a torn file: nothing, not an error


async def test_keys_open_a_trials_run_and_compare_the_best(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = write_sweep_file(runs)
    (runs / "demo-t002").mkdir()
    app = SweepApp(folder)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        assert "sweep demo · 4/8 trials done" in text and "best: trial 2 at 66.00%" in text
        assert "loss became nan" not in text and "failed" in text and "GPU 0" in text
        assert "trial 2 completed · run demo-t002 · 3 seeds: 64.0% ± 2.0%" in text  # the highlighted one
        await pilot.press("down", "down", "down", "down")  # the last row: the failed trial says why
        await app_until(pilot, lambda: "trial 3 failed: loss became nan" in screen_text(app))
        await pilot.press("up", "up", "up", "up")
        await pilot.press("x")  # prune: trial 2 has ended; nothing is sent
        await app_until(pilot, lambda: any("highlight a running trial" in str(n.message)
                                           for n in app._notifications))  # fmt: skip
        await pilot.press("c")
        from tui.screens.runs import RunsScreen

        await app_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert app.screen.preselected[:3] == [str(runs / f"demo-t{n:03d}") for n in (2, 0, 4)]  # type: ignore[attr-defined]
        await pilot.press("escape")
        await app_until(pilot, lambda: isinstance(app.screen, SweepScreen))
        await pilot.press("enter")  # the best trial's run: the dashboard opens on it
        await app_until(pilot, lambda: not app.is_running)
    assert app.return_value == ("attach", str(runs / "demo-t002"))


async def test_q_on_a_sweep_the_screen_started_asks_and_q_again_stops_it(tmp_path: Path) -> None:
    folder = write_sweep_file(tmp_path / "runs")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # stands in for the sweep
    try:
        app = SweepApp(folder, sleeper)  # type: ignore[arg-type]
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("q")
            await app_until(pilot, lambda: "The sweep is running. Quit?" in screen_text(app))
            await pilot.press("q")
            await app_until(pilot, lambda: not app.is_running)
        assert app.return_value == "stop"
        app = SweepApp(folder)  # watching only: q just closes
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("q")
            await app_until(pilot, lambda: not app.is_running)
        assert app.return_value is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_serving_a_sweeps_folder_serves_its_screen_watching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cifar-tui serve RUNS/NAME.sweep``: every tab runs the sweep screen on that sweep, watching
    (``sweep NAME --runs-root RUNS --watch``), not a run's dashboard."""
    import shlex

    from tui import serve

    folder = write_sweep_file(tmp_path / "runs")
    served: list[str] = []
    monkeypatch.setattr(serve, "serve_run", lambda _folder, _args, command="": served.append(command) or 0)
    assert serve.serve_main([str(folder), "--port", "8799"]) == 0
    parts = shlex.split(served[0])
    assert parts[0] == "exec" and parts[2:] == ["-m", "tui.cli", "sweep", "demo", "--runs-root",
                                                 str((tmp_path / "runs").resolve()), "--watch"]  # fmt: skip
