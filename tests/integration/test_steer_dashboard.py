"""Steering from the dashboard, on the real engine: the LR keys, the steering dialog (a value
that does not read stays in the dialog, said under it), and what the panes show afterwards."""

from __future__ import annotations

from pathlib import Path

from engine.run import events as ev
from engine.run.rundir import read_events
from tests.helpers.common import screen_text, tiny_config
from tests.helpers.scripted import T0, ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until, settle
from tui.app import CifarTui, make_app
from tui.screens.steer import SteerDialog


def steered_in(app: CifarTui) -> list[tuple[str, float, str]]:
    """The run's steering acts as its log holds them, refused ones too (what a failed wait shows)."""
    run = Path(app.run_state.started.run_dir) if app.run_state.started else None
    return [(e.what, e.new, e.refused) for e in read_events(run) if isinstance(e, ev.Steered)] if run else []


async def test_keys_and_the_dialog_steer_the_run_and_the_panes_say_so(tmp_path: Path) -> None:
    app = make_app(tiny_config(tmp_path, epochs=200, progress_hz=20.0), refresh_hz=4.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.global_step > 2)
        await pilot.press("minus")
        await app_until(pilot, lambda: app.run_state.lr_scale == 0.5)
        await pilot.press("plus", "plus")
        await app_until(pilot, lambda: app.run_state.lr_scale == 2.0)
        await app_until(pilot, lambda: "(x2)" in screen_text(app))  # the effective LR, with its multiplier
        await pilot.press("t")
        await app_until(pilot, lambda: isinstance(app.screen, SteerDialog))
        await pilot.press("a", "b", "enter")  # the first field, its value selected: typing replaces it
        await app_until(pilot, lambda: "is not a number" in screen_text(app))
        assert isinstance(app.screen, SteerDialog)  # still open: nothing was sent
        await pilot.press("escape", "p")  # paused, a run is still steered: the acts wait for no batch
        await app_until(pilot, lambda: app.run_state.state == "paused")
        last = app.run_state.epoch + 1  # end with the epoch under way
        await pilot.press("t")
        await app_until(pilot, lambda: isinstance(app.screen, SteerDialog))
        await pilot.press("tab", *str(last), "tab", "tab", "9", "9", "enter")
        await app_until(
            pilot,
            lambda: app.run_state.epochs == last and app.run_state.target_accuracy == 0.99,
            why=lambda: (last, app.run_state.epoch, steered_in(app), screen_text(app)[-600:]),
        )
        await app_until(pilot, lambda: "ends on: target 99%" in screen_text(app))  # at the pane's next refresh
        await pilot.press("p")
        await app_until(pilot, lambda: app.run_state.finished is not None, 120)
        assert app.run_state.finished.reason == "completed" and app.run_state.finished.epochs_done == last
        await app_until(pilot, lambda: f"epoch {last}/{last}" in screen_text(app))
        await pilot.press("t")
        await app_until(pilot, lambda: any("no training is running" in n.message for n in app._notifications))
        await pilot.press("q")
        await app_until(pilot, lambda: not app.is_running, 30)
    steered = [e for e in read_events(Path(app.run_state.started.run_dir)) if isinstance(e, ev.Steered)]
    assert [(e.what, e.new, e.source) for e in steered] == [
        ("lr_scale", 0.5, "dashboard"), ("lr_scale", 1.0, "dashboard"), ("lr_scale", 2.0, "dashboard"),
        ("epochs", last, "dashboard"), ("target_accuracy", 0.99, "dashboard")]  # fmt: skip


async def test_a_run_ended_by_a_stop_rule_shows_where_it_ended_and_why() -> None:
    cfg = tutorial_config()
    cause = "target accuracy 55% reached at epoch 3 (57.80%)"
    events = [*script(cfg, 3, ""), ev.Status("finished", "", t=T0),
              ev.Finished("completed", 3, 3 * 782, 0.578, 0.578, 99.0, cause=cause, t=T0)]  # fmt: skip
    app = CifarTui(cfg, lambda c: ScriptedSession(events), telemetry_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(events))
        text = screen_text(app)
        assert "epoch 3/10" in text and "30%" in text  # not the epoch after, not the planned end
        assert "completed (target accuracy 55% reached at" in text  # the progress pane says why it ended
        assert f"completed ({cause}): 3 epochs" in text  # and the log


async def test_a_scripted_run_gets_the_acts_the_keys_make() -> None:
    cfg = tutorial_config()
    session = ScriptedSession(script(cfg, 1, ""))
    app = CifarTui(cfg, lambda c: session, telemetry_s=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(session.script))
        await pilot.press("plus", "equals_sign", "minus")
        await app_until(pilot, lambda: len(session.steered) == 3)
        assert [(a.what, a.value, a.extra, a.source) for a in session.steered] == [
            ("lr_scale", 2.0, 1.0, "dashboard"), ("lr_scale", 2.0, 1.0, "dashboard"),
            ("lr_scale", 0.5, 1.0, "dashboard")]  # fmt: skip


async def test_keys_typed_ahead_into_the_steer_dialog_land_in_the_fields_they_were_meant_for() -> None:
    """`t`, a value, tab, another value and enter typed (or pasted) in one burst, faster than the
    dialog opens and selects: each lands in its field, none acts on the dashboard behind it."""
    from textual import events

    cfg = tutorial_config()
    played = script(cfg, 3)
    session = ScriptedSession(played)
    app = CifarTui(cfg, lambda c: session, telemetry_s=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, events=len(played))
        burst = [("t", "t"), ("0", "0"), ("full_stop", "."), ("2", "2"), ("5", "5"), ("tab", None),
                 ("minus", "-"), ("1", "1"), ("enter", None)]  # fmt: skip
        assert app._driver is not None
        for key, char in burst:  # straight into the driver, not waiting for the app between keys
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)
        await app_until(pilot, lambda: len(session.steered) == 2, why=lambda: (session.steered, session.commands))
        assert [(a.what, a.value, a.extra) for a in session.steered] == [("lr_scale", 0.25, 0.0), ("epochs", -1.0, 1.0)]
        assert session.commands == ["steer", "steer"]  # the "-" went into the field, not to the LR key
