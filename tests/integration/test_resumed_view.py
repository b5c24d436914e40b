"""A resumed run on the dashboard: attached or owned, it shows the whole history and acts as the
running run it is (an earlier session's end is history, not the run's state)."""

from __future__ import annotations

from pathlib import Path

from engine.run import events as ev
from engine.run.rundir import read_events
from engine.train.trainer import Trainer
from tests.helpers.common import Recorder, tiny_config
from tests.helpers.scripted import ScriptedSession
from tests.helpers.waiting import app_until
from tui.app import CifarTui, make_app


def resumed_run(tmp_path: Path) -> Path:
    """A run stopped after epoch 1 and resumed to 2 epochs, in its own folder."""
    run = tmp_path / "run"
    Trainer(tiny_config(tmp_path, epochs=1), Recorder()).run()
    last = str(run / "checkpoints" / "last.pt")
    Trainer(tiny_config(tmp_path, run_dir="", resume=last, epochs=2), Recorder()).run()
    return run


async def test_attaching_to_a_resumed_run_shows_it_running_and_takes_keys(tmp_path: Path) -> None:
    events = read_events(resumed_run(tmp_path))
    # The resumed session while it trains: its first epoch done, its own end not yet written.
    live = events[: max(i for i, e in enumerate(events) if isinstance(e, ev.Progress)) + 1]
    assert any(isinstance(e, ev.Finished) for e in live)  # the first session's end is in the history
    session = ScriptedSession(live)
    app = CifarTui(tiny_config(tmp_path), lambda cfg: session, telemetry_s=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: app.events_seen == len(live))
        assert app.run_state.state == "training" and app.controller.training_running()
        assert app.run_state.test_accuracy.points()[0] == [1]  # the first session's epoch, drawn
        await pilot.press("p")
        await app_until(pilot, lambda: session.commands == ["toggle_pause"])


async def test_a_dashboard_that_resumes_draws_the_curve_from_the_start(tmp_path: Path) -> None:
    run = tmp_path / "run"
    Trainer(tiny_config(tmp_path, epochs=1), Recorder()).run()
    first_session = [e for e in read_events(run) if isinstance(e, ev.Progress)]
    app = make_app(tiny_config(tmp_path, run_dir="", resume=str(run / "checkpoints" / "last.pt"), epochs=2))
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None, 120)
        assert app.run_state.finished.reason == "completed"  # type: ignore[union-attr]
        assert app.run_state.test_accuracy.points()[0] == [1, 2]
        steps = app.run_state.train_loss.points()[0]
        assert steps[0] == first_session[0].global_step and steps[-1] > first_session[-1].global_step
        await pilot.press("q")
