"""Snapshots of the main states at 80x24 and at a large size, fed by scripted events.

Update after an intended change with: pytest tests/integration/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.run import events as ev
from engine.run.gallery import Gallery, read_gallery
from tests.helpers.scripted import T0, ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until
from tests.helpers.waiting import settle as settle_app
from tui.app import CifarTui
from tui.screens.gallery import GalleryScreen, MistakeScreen, confident_title


def app_for(end: str, epochs_done: int = 3, extra: list[ev.Event] | None = None) -> CifarTui:
    cfg = tutorial_config()
    events = script(cfg, epochs_done, end) + (extra or [])
    return CifarTui(cfg, lambda c: ScriptedSession(events), telemetry_s=3600)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Every scripted event taken and shown: waits on the app, not on the clock."""
    await settle_app(pilot, events=len(pilot.app.session.script))


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_training(snap_compare, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_for(""), terminal_size=size, run_before=settle)


def test_paused(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_for("paused"), terminal_size=(80, 24), run_before=settle)


def test_finished_with_per_class(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(app_for("finished", epochs_done=10), terminal_size=(120, 40), run_before=settle)


def test_failed(snap_compare) -> None:  # type: ignore[no-untyped-def]
    failed = [ev.Failed("out_of_memory", "out of GPU memory at batch size 4096; try --batch-size 2048", t=T0)]
    assert snap_compare(app_for("", extra=failed), terminal_size=(80, 24), run_before=settle)


def test_confusion_matrix(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_confusion(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("c")
        await pilot.pause()

    assert snap_compare(app_for("finished", epochs_done=10), terminal_size=(120, 40), run_before=open_confusion)


def test_help_fits_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_help(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app_for(""), terminal_size=(80, 24), run_before=open_help)


def test_loss_on_a_log_axis(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def log_view(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("v", "l")  # loss only, log scale: the view for a late, flat loss curve
        await settle(pilot)

    assert snap_compare(app_for("", epochs_done=8), terminal_size=(100, 30), run_before=log_view)


def test_runs_screen_compares_configs(snap_compare, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json
    import time

    from engine.run.config import from_recipe

    monkeypatch.chdir(tmp_path)  # the screen names its folder: keep it the same on every machine
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    runs = [
        ("20261127-120000-tutorial-cifar10", from_recipe("tutorial"), [62.8, 70.1, 74.3], 412.0),
        ("20261127-130000-tutorial-cifar10", from_recipe("tutorial", lr=0.01), [55.0, 66.2, 71.9], 405.0),
        ("20261127-140000-fast-cifar10", from_recipe("fast", epochs=3), [71.5, 84.0, 90.2], 95.0),
    ]
    for i, (name, cfg, curve, seconds) in enumerate(runs):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "events.jsonl").write_text("")
        summary = {"version": 1, "config": cfg.to_dict(), "status": "finished", "started": T0 + 3600 * i,
                   "last_t": T0 + 3600 * i + seconds, "epochs_done": 3, "best_accuracy": max(curve) / 100,
                   "final_accuracy": curve[-1] / 100, "curve": [[e + 1, a] for e, a in enumerate(curve)]}  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(summary))

    async def compare(pilot) -> None:  # type: ignore[no-untyped-def]
        from tests.helpers.waiting import app_until

        await settle(pilot)
        await pilot.press("r")
        await app_until(pilot, lambda: getattr(pilot.app.screen, "loaded", False))
        await pilot.press("down", "space", "t")  # the second run joins the one on screen
        await pilot.pause()

    try:
        assert snap_compare(app_for("finished", epochs_done=3), terminal_size=(80, 24), run_before=compare)
    finally:
        monkeypatch.undo()
        time.tzset()


def steered_app() -> CifarTui:
    last = 3 * 782 + 400  # the script's last step: acts at the boundary after it
    acts = [ev.Steered(last, 4, "lr_scale", 1.0, 0.5, "dashboard", t=T0),
            ev.Steered(last, 4, "early_stop", 0.0, 3.0, "command line", t=T0)]  # fmt: skip
    return app_for("", extra=acts)


def test_steering_dialog_fits_80x24(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_steer(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()

    assert snap_compare(steered_app(), terminal_size=(80, 24), run_before=open_steer)


def test_a_steered_run_shows_its_multiplier_rules_and_marks(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(steered_app(), terminal_size=(160, 50), run_before=settle)


def range_test_found() -> ev.LrFound:
    """A range test as a real one looks: flat, a long fall, a minimum, then the cliff."""
    from engine.run.lr_suggest import smooth, suggest

    lrs = [1e-7 * 1e8 ** (i / 99) for i in range(100)]
    losses = [2.3 - 1.6 / (1 + math.exp(-(i - 55) / 7)) + (0.02 * ((i * 7) % 5)) + max(0, i - 88) ** 2 * 0.08
              for i in range(100)]  # fmt: skip
    s = suggest(lrs, losses)
    assert s is not None
    return ev.LrFound(lrs, losses, smooth(losses), s.valley, s.steepest, s.minimum_tenth, 0.001, 21.5, asks=True,
                      t=T0)  # fmt: skip


def test_lr_finder_offers_its_suggestion(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def offered(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        await pilot.pause()
        plot = pilot.app.screen.query_one("#lr-find-plot")
        await app_until(pilot, lambda: plot.draws > 0)

    app = app_for("", epochs_done=0, extra=[range_test_found()])
    assert snap_compare(app, terminal_size=(110, 36), run_before=offered)


def made_gallery(folder: Path) -> Gallery:
    """A gallery of 40 demo test images with made-up predictions: the same on every machine."""
    from engine.data.demo import make_demo
    from engine.train.mistakes import write_gallery

    (_train, (images, labels)) = make_demo(0)
    rows = [(k, int(labels[k]), [((int(labels[k]) + 1 + k % 3) % 10, round(0.9 - k * 0.01, 4)),
                                 (int(labels[k]), 0.05), ((int(labels[k]) + 5) % 10, 0.02)]) for k in range(40)]  # fmt: skip
    write_gallery(folder, rows, images, [f"class{i}" for i in range(10)], {"epoch": 2, "step": 0, "global_step": 2346,
                                                                           "accuracy": 0.8125})  # fmt: skip
    gallery = read_gallery(folder)
    assert gallery is not None
    return gallery


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_mistakes_gallery(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    gallery = made_gallery(tmp_path)

    async def open_gallery(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        pilot.app.push_screen(GalleryScreen(gallery, gallery.most_confident(), confident_title(gallery)))
        await app_until(pilot, lambda: isinstance(pilot.app.screen, GalleryScreen))
        await pilot.press("right")

    assert snap_compare(app_for("finished", epochs_done=10), terminal_size=size, run_before=open_gallery)


def test_one_mistake_large(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gallery = made_gallery(tmp_path)

    async def open_one(pilot) -> None:  # type: ignore[no-untyped-def]
        await settle(pilot)
        pilot.app.push_screen(GalleryScreen(gallery, gallery.most_confident(), confident_title(gallery)))
        await app_until(pilot, lambda: isinstance(pilot.app.screen, GalleryScreen))
        await pilot.press("enter", "right")
        await app_until(pilot, lambda: isinstance(pilot.app.screen, MistakeScreen))

    assert snap_compare(app_for("finished", epochs_done=10), terminal_size=(80, 24), run_before=open_one)


def test_batch_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The batch of a tiny demo run, rebuilt from its seed (the same on every machine)."""
    from engine.session.attached import AttachedSession
    from engine.train.trainer import Trainer
    from tests.helpers.common import tiny_config
    from tui.app import make_app
    from tui.screens.batch import BatchScreen

    cfg = tiny_config(tmp_path, cutout=8)
    Trainer(cfg, lambda _event: None).run()
    app = make_app(cfg, lambda _cfg: AttachedSession(Path(cfg.run_dir)), refresh_hz=4.0)

    async def open_batch(pilot) -> None:  # type: ignore[no-untyped-def]
        await app_until(pilot, lambda: app.run_state.finished is not None)
        await pilot.press("b")
        await app_until(pilot, lambda: isinstance(app.screen, BatchScreen) and bool(app.screen.query("Pair")),
                        timeout=120)  # fmt: skip
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_batch)
