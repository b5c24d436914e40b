"""The dashboard driven by Textual's pilot, on the real engine with tiny demo data."""

from __future__ import annotations

import itertools
import os
import re
import threading
from pathlib import Path

import psutil
import pytest

from engine.train.checkpoint import load_checkpoint
from tests.helpers.common import live_children, screen_text, tiny_config
from tests.helpers.scripted import ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until
from tui.app import CifarTui, make_app
from tui.screens.dialogs import Choice
from tui.widgets.plots import PlotPane


def trainer_children() -> list[psutil.Process]:
    return live_children(os.getpid(), "engine.session.worker")


@pytest.fixture
def live_app(tmp_path: Path) -> CifarTui:
    # Many epochs: training is still running while the test presses keys; quitting stops it.
    return make_app(tiny_config(tmp_path, epochs=200, progress_hz=20.0), refresh_hz=4.0)


async def test_curves_progress_and_pause_resume(live_app: CifarTui) -> None:
    app = live_app
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.global_step > 3 and all(p.draws for p in app.query(PlotPane)
                                                                               if p.id != "accuracy"))  # fmt: skip
        assert "training" in screen_text(app) and "img/s" in screen_text(app)
        await pilot.press("p")
        await app_until(pilot, lambda: app.run_state.state == "paused")
        step = app.run_state.global_step
        await pilot.pause(1.0)
        assert app.run_state.global_step == step and "paused" in screen_text(app)
        await pilot.press("p")
        await app_until(pilot, lambda: app.run_state.global_step > step)
        await pilot.press("q")
        assert isinstance(app.screen, Choice)
        await pilot.click("#nosave")
        await app_until(pilot, lambda: not app.is_running, 30)
    assert not trainer_children()
    assert not [t for t in threading.enumerate() if t.name.startswith("_watch_engine")]


async def test_save_and_evaluate_keys(live_app: CifarTui) -> None:
    app = live_app
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.global_step > 2)
        await pilot.press("e")
        await app_until(
            pilot, lambda: app.run_state.last_eval is not None and app.run_state.last_eval.reason == "request"
        )
        await app_until(
            pilot, lambda: all(w in screen_text(app) for w in ("per-class accuracy", "triangle", "checker"))
        )
        # Evaluate-now results are plotted on both plots, named in their legends.
        await app_until(pilot, lambda: screen_text(app).count("● now") == 2)
        await pilot.press("s")
        await app_until(pilot, lambda: "checkpoint saved (request)" in screen_text(app))
        ckpt = load_checkpoint(Path(app.run_state.last_checkpoint))
        assert ckpt["class_names"][0] == "disc"
        await pilot.press("c")
        await app_until(pilot, lambda: "confusion matrix" in screen_text(app))
        await pilot.press("c")
        await pilot.press("q")
        await pilot.click("#save")
        await app_until(pilot, lambda: not app.is_running, 30)
    assert app.return_code == 130  # stopped before the end
    assert not trainer_children()


async def test_finished_run_stays_on_screen_and_quits_without_asking(tmp_path: Path) -> None:
    app = make_app(tiny_config(tmp_path, epochs=1), refresh_hz=4.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        words = ("finished", "press q to quit", "disc")  # the first class: always in view
        await app_until(pilot, lambda: all(w in screen_text(app) for w in words),
                        why=lambda: (app.unsettled(), screen_text(app).split("cifar-tui tutorial")[-1]))  # fmt: skip
        await pilot.press("q")
        await app_until(pilot, lambda: not app.is_running, 10)
    assert app.return_code == 0


async def test_failure_is_shown_and_app_stays_usable(tmp_path: Path) -> None:
    app = make_app(tiny_config(tmp_path, device="cuda:4096"))  # no such GPU on any machine
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: app.run_state.failed is not None)
        await app_until(pilot, lambda: "--device cuda:4096" in screen_text(app))
        await pilot.press("q")
        await app_until(pilot, lambda: not app.is_running, 10)
    assert app.return_code == 2


async def test_cpu_machine_shows_cpu_info_without_nvml() -> None:
    # CI has no GPU and no NVML: the device pane must show CPU facts, not fail.
    app = CifarTui(tutorial_config(), lambda cfg: ScriptedSession(script(cfg, 1)), telemetry_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.started is not None)
        await app_until(pilot, lambda: "Example CPU" in screen_text(app) and "2 torch threads" in screen_text(app))


async def test_stray_prints_go_to_the_log_pane() -> None:
    app = CifarTui(tutorial_config(), lambda cfg: ScriptedSession(script(cfg, 1)))
    async with app.run_test(size=(120, 40)) as pilot:
        print("hello from a stray print")
        await app_until(pilot, lambda: "hello from a stray print" in screen_text(app))


async def test_download_failure_offers_demo_data(tmp_path: Path) -> None:
    from engine.run import events as ev

    failing = [
        ev.Failed("download", "could not download CIFAR-10 into /x (no network); use --data demo", detail="data")
    ]
    started: list[str] = []

    def factory(cfg):  # type: ignore[no-untyped-def]
        started.append(cfg.data)
        return ScriptedSession(failing if len(started) == 1 else script(cfg, 1))

    app = CifarTui(tutorial_config(), factory)
    async with app.run_test(size=(100, 30)) as pilot:
        await app_until(pilot, lambda: isinstance(app.screen, Choice) and bool(app.screen.query("#offline")))
        # The dialog laid out: a click lands on its button.
        await app_until(pilot, lambda: app.screen.query_one("#offline").region.width > 0)
        await pilot.pause()
        await pilot.click("#offline")
        await app_until(pilot, lambda: app.run_state.started is not None)
    assert started == ["cifar10", "demo"]
    assert app.cfg.weights == "none"  # offline all the way: the ImageNet weights would fail next


async def test_sighup_saves_stops_and_exits_with_its_code(live_app: CifarTui) -> None:
    import os
    import signal

    app = live_app
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.global_step > 2)
        os.kill(os.getpid(), signal.SIGHUP)  # what a dropped SSH session sends
        await app_until(pilot, lambda: not app.is_running, 30)
    assert app.return_code == 128 + signal.SIGHUP
    assert app.run_state.finished is not None and app.run_state.finished.reason == "stopped"
    assert load_checkpoint(Path(app.run_state.finished.checkpoint))["global_step"] == app.run_state.finished.global_step
    assert not trainer_children()


async def _notifications(events: list, wanted: bool) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    app = CifarTui(tutorial_config(), lambda c: ScriptedSession(events), notify_desktop=wanted)
    app.desktop_notify = lambda title, body: calls.append((title, body))  # type: ignore[method-assign]
    async with app.run_test(size=(120, 40)) as pilot:
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.pause()
    return calls


@pytest.mark.parametrize("wanted", [True, False])
async def test_run_end_notifies_only_when_live_and_wanted(wanted: bool) -> None:
    from engine.run import events as ev

    cfg = tutorial_config()
    old = script(cfg, 1, "finished")  # an attached replay of a run that ended long ago: no news
    live = [*script(cfg, 1), ev.Finished("completed", 1, 782, 0.9, 0.9, 60.0)]  # ends now
    assert await _notifications(old, wanted) == []
    assert await _notifications(live, wanted) == ([("training completed", "test accuracy 90.00%")] if wanted else [])


def test_eta_follows_the_runs_own_pace_across_an_epoch_boundary() -> None:
    """A slow first batch after an evaluation (DataLoader workers starting) must not make the ETA jump."""
    from engine.run import events as ev
    from tests.helpers.scripted import run_started
    from tui.state import RunState

    cfg = tutorial_config()  # 10 epochs
    state = RunState()
    state.apply(run_started(cfg))
    spe = state.steps_per_epoch

    def progress(epoch: int, step: int, elapsed: float, speed: float) -> None:
        state.apply(ev.Progress(epoch=epoch, epochs=10, step=step, steps_per_epoch=spe, global_step=epoch * spe + step,
                                loss=1.0, lr=0.001, images_per_sec=speed, data_wait=0.0, elapsed=elapsed))  # fmt: skip

    progress(0, spe, spe / 10, 640.0)  # 10 steps/s of 64 images
    state.apply(ev.EpochEnd(1, 10, 1.0, 0.5, 1.0, 0.5, 640.0, spe / 10, 3.0, 0.001))
    progress(1, 1, spe / 10 + 3.0 + 0.5, 5.0)  # 3 s of evaluation, then one slow batch
    eta = state.eta_seconds()
    pace = (spe / 10 + 3.5) / (spe + 1)  # the run's own seconds per step, evaluation included
    assert eta is not None and abs(eta - (9 * spe - 1) * pace) < 1.0


def test_eta_of_a_steady_run_does_not_swing_with_noisy_interval_speeds() -> None:
    """Interval speeds swing 20x (a slow batch, a fast one) on a run whose pace is steady: the ETA
    moves smoothly down, and the elapsed figure stays the run's own."""
    from engine.run import events as ev
    from tests.helpers.scripted import run_started
    from tui.state import RunState

    state = RunState()
    state.apply(run_started(tutorial_config()))  # 10 epochs
    spe = state.steps_per_epoch
    etas = []
    for i, step in enumerate(range(10, spe, 10)):
        speed = 100.0 if i % 2 else 2000.0
        state.apply(ev.Progress(epoch=0, epochs=10, step=step, steps_per_epoch=spe, global_step=step, loss=1.0,
                                lr=0.001, images_per_sec=speed, data_wait=0.0, elapsed=step / 10))  # fmt: skip
        etas.append(state.eta_seconds())
    assert all(eta is not None for eta in etas)
    for before, after in itertools.pairwise(etas):
        assert after <= before and before - after < 0.1 * before  # type: ignore[operator]
    assert abs(etas[-1] - (10 * spe - (spe - 1) // 10 * 10) / 10) < 5  # type: ignore[operator]


async def test_loss_axis_log_scale_and_smoothing_keys() -> None:
    from tests.helpers.waiting import settle
    from tui.widgets.plots import LossPlot

    app = CifarTui(tutorial_config(), lambda cfg: ScriptedSession(script(cfg, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(app.session.script))  # type: ignore[attr-defined]
        plot = app.query_one(LossPlot)
        linear = plot.render().plain
        assert "linear, smoothing 0.9" in str(plot.border_title)
        await pilot.press("l")
        assert "log, smoothing 0.9" in str(plot.border_title)
        # The axis labels change with the scale: on a log axis the ticks are no longer evenly spaced values.
        assert plot.render().plain != linear
        await pilot.press("m", "m")
        assert "log, raw" in str(plot.border_title)
        await pilot.press("l")
        assert "linear, raw" in str(plot.border_title) and plot.render().plain != linear


def test_smoothing_keeps_its_reach_in_steps_when_the_series_is_downsampled() -> None:
    # 0.9 per raw step: after 40 steps of a jump from 1 to 0 the curve has fallen to 0.9**40 of
    # the jump, whether each stored point stands for one step or for eight.
    from tui.series import Series, smoothed

    for n_before in (100, 3200):
        series = Series(budget=400)
        for i in range(n_before):
            series.add(i, 1.0)
        for i in range(n_before, n_before + 40 * 8):
            series.add(i, 0.0)
        xs, ys = series.points()
        smooth = smoothed(ys, 1 - 0.9**series.weight)
        after_40 = next(s for x, s in zip(xs, smooth) if x >= n_before + 40 - 1)
        assert 0.005 < after_40 < 0.05, (series.weight, after_40)


async def test_log_keeps_its_newest_line_in_view_after_the_terminal_shrinks() -> None:
    from engine.run import events as ev
    from tests.helpers.waiting import settle
    from tui.widgets.log import LogPane

    cfg = tutorial_config()
    saves = [ev.Log(f"checkpoint saved (request): step-{n:08d}.pt", t=1.8e9) for n in range(12)]
    app = CifarTui(cfg, lambda c: ScriptedSession(script(c, 1) + saves))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, events=len(app.session.script))  # type: ignore[attr-defined]
        assert "step-00000011.pt" in screen_text(app)
        await pilot.resize_terminal(80, 24)  # the log pane shrinks from 5 lines to 2
        await app_until(pilot, lambda: app.query_one(LogPane).size.height <= 4)
        await settle(pilot, events=len(app.session.script))  # type: ignore[attr-defined]
        assert "step-00000011.pt" in screen_text(app) and "step-00000008.pt" not in screen_text(app)


async def test_accuracy_axis_stays_within_0_and_100_with_one_evaluate_now_point() -> None:
    from tests.helpers.scripted import evaluation
    from tests.helpers.waiting import settle
    from tui.widgets.plots import AccuracyPlot

    cfg = tutorial_config()
    import dataclasses

    now = dataclasses.replace(evaluation(0, 300, "request"), accuracy=0.942)  # plotext alone: 47-141%
    app = CifarTui(cfg, lambda c: ScriptedSession([*script(c, 0), now]))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(app.session.script))  # type: ignore[attr-defined]
        text = app.query_one(AccuracyPlot).render().plain
        left_labels = [float(m) for m in re.findall(r"^\s*(\d+(?:\.\d+)?)\s*┤", text, re.M)]
        assert left_labels and all(0 <= v <= 100 for v in left_labels), left_labels


def footer_of(app: CifarTui) -> str:
    return [line for line in screen_text(app).splitlines() if line.strip()][-1]


async def test_the_footer_shows_the_keys_that_act_now_and_a_dead_key_says_why() -> None:
    from tests.helpers.waiting import settle

    cfg = tutorial_config()
    training = CifarTui(cfg, lambda c: ScriptedSession(script(c, 3)))
    async with training.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(training.session.script))  # type: ignore[attr-defined]
        footer = footer_of(training)
        assert all(k in footer for k in ("p pause", "s save", "e eval", "t steer", "- LR/2", "+ LR×2", "? help"))
    # At 80 columns every footer key is on screen, q and ? (the last) included.
    narrow = CifarTui(cfg, lambda c: ScriptedSession(script(c, 3)))
    async with narrow.run_test(size=(80, 24)) as pilot:
        await settle(pilot, events=len(narrow.session.script))  # type: ignore[attr-defined]
        footer = footer_of(narrow)
        assert footer.split() == ["p", "pause", "s", "save", "e", "eval", "t", "steer", "-", "LR/2", "+", "LR×2", "c",
                                  "confusion", "q", "quit", "?", "help"], footer  # fmt: skip
    ended = CifarTui(cfg, lambda c: ScriptedSession(script(c, 10, end="finished")))
    async with ended.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(ended.session.script))  # type: ignore[attr-defined]
        await app_until(pilot, lambda: "p pause" not in footer_of(ended))
        footer = footer_of(ended)
        assert "s save" not in footer and "t steer" not in footer and "c confusion" in footer and "q quit" in footer
        await pilot.press("p")  # not in the footer, still answered
        await app_until(pilot, lambda: "no training is running" in [n.message for n in ended._notifications])
        await pilot.press("q")


async def test_small_terminal_keeps_a_device_line_and_marks_hidden_class_rows() -> None:
    from tests.helpers.waiting import settle
    from tui.widgets.plots import LrPlot

    app = CifarTui(tutorial_config(), lambda c: ScriptedSession(script(c, 3)))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, events=len(app.session.script))  # type: ignore[attr-defined]
        await app_until(pilot, lambda: "scroll for all 10 classes" in screen_text(app))
        assert "cpu · CPU" in screen_text(app)  # the device pane, one line
        assert not app.query_one(LrPlot).display or app.query_one(LrPlot).size.height == 0
        await pilot.press("v", "v", "v")  # the learning rate alone
        await app_until(pilot, lambda: "learning rate · now" in screen_text(app))
        await pilot.press("v")  # all plots again (the choice is kept for the next session)
    big = CifarTui(tutorial_config(), lambda c: ScriptedSession(script(c, 3)))
    async with big.run_test(size=(160, 50)) as pilot:
        await settle(pilot, events=len(big.session.script))  # type: ignore[attr-defined]
        text = screen_text(big)
        assert "learning rate · now" in text and "━ test" in text and "torch threads" in text
        assert "⅃" not in text  # plotext's side markers: the legends are words in the titles now


async def test_view_settings_are_kept_for_the_next_session() -> None:
    from tests.helpers.waiting import settle
    from tui.widgets.plots import AccuracyPlot, LossPlot

    first = CifarTui(tutorial_config(), lambda c: ScriptedSession(script(c, 3)))
    async with first.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(first.session.script))  # type: ignore[attr-defined]
        await pilot.press("l", "m", "v")  # log axis, smoothing 0.99, loss plot alone
        await pilot.press("q")
    again = CifarTui(tutorial_config(), lambda c: ScriptedSession(script(c, 3)))
    async with again.run_test(size=(120, 40)) as pilot:
        await settle(pilot, events=len(again.session.script))  # type: ignore[attr-defined]
        assert "log, smoothing 0.99" in str(again.query_one(LossPlot).border_title)
        assert not again.query_one(AccuracyPlot).display
        await pilot.press("v", "v", "v")  # back to all plots
        assert again.query_one(AccuracyPlot).display
        await pilot.press("q")


async def test_a_key_pressed_before_the_trainer_is_reached_is_kept_and_sent() -> None:
    """A browser tab's first keys can arrive before the session has started: said, then sent."""
    from engine.run.controls import Command
    from tests.helpers.waiting import settle

    release = threading.Event()

    class SlowStart(ScriptedSession):
        def start(self) -> None:
            release.wait(30)  # connecting to the trainer takes a while
            super().start()

    app = CifarTui(tutorial_config(), lambda c: SlowStart(script(c, 3)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("p")
        await app_until(
            pilot, lambda: any("as soon as the trainer is reached" in n.message for n in app._notifications)
        )
        release.set()
        await settle(pilot, events=len(script(tutorial_config(), 3)))
        await app_until(pilot, lambda: Command.TOGGLE_PAUSE in app.session.commands)  # type: ignore[union-attr, attr-defined]
        await pilot.press("q")
