"""Snapshots of the main states at 80x24 and at a large size, fed by scripted events.

Update after an intended change with: pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from engine import events as ev
from tests.conftest import settle as settle_app
from tests.scripted import T0, ScriptedEngine, script, tutorial_config
from tui.app import CifarTui


def app_for(end: str, epochs_done: int = 3, extra: list[ev.Event] | None = None) -> CifarTui:
    cfg = tutorial_config()
    events = script(cfg, epochs_done, end) + (extra or [])
    return CifarTui(cfg, lambda c: ScriptedEngine(events), telemetry_s=3600)


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Every scripted event taken and shown: waits on the app, not on the clock."""
    await settle_app(pilot, events=len(pilot.app.engine.script))


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
