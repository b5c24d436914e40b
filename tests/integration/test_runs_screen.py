"""The runs screen over many runs: compared side by side, each in a colour of its own, with the
marks of where each was steered; q leaves the app from it as the footer says."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from engine.run import events as ev
from engine.run import wire
from engine.run.summary import SummaryFold
from tests.helpers.common import screen_text
from tests.helpers.scripted import T0, ScriptedSession, script, tutorial_config
from tests.helpers.waiting import app_until, settle
from tui.app import CifarTui
from tui.screens.runs import RUN_COLORS, RunsScreen


def write_run(folder: Path, events: list[ev.Event]) -> None:
    """A finished run as the trainer leaves it: its events and the summary folded from them."""
    folder.mkdir(parents=True)
    (folder / "events.jsonl").write_text("".join(wire.to_json_line(e) + "\n" for e in events))
    fold = SummaryFold()
    for event in events:
        fold.add(event)
    (folder / "summary.json").write_text(json.dumps(fold.to_dict()))


async def test_eight_runs_compare_each_in_its_colour_with_steering_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tutorial_config()
    base = script(cfg, 3, "finished")
    for i in range(8):
        name = f"20261127-1{i}0000-tutorial-cifar10"
        events = [replace(e, run_dir=f"runs/{name}") if isinstance(e, ev.RunStarted) else e for e in base]
        if i == 7:  # the last run was halved at step 1000 and once refused
            events.insert(-3, ev.Steered(1000, 2, "lr_scale", 1.0, 0.5, "dashboard", t=T0))
            events.insert(-3, ev.Steered(1200, 2, "epochs", 3.0, 1.0, "dashboard", refused="too late", t=T0))
        write_run(tmp_path / "runs" / name, events)
    app = CifarTui(cfg, lambda c: ScriptedSession(base), telemetry_s=3600)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot, events=len(base))
        await pilot.press("r")
        await app_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        screen = app.screen
        assert isinstance(screen, RunsScreen) and len(screen.runs) == 8
        await pilot.press(*["up"] * 8)
        for _ in range(8):  # every run selected (the one on screen was selected already: skip it)
            run = screen.runs[screen.query_one("DataTable").cursor_row]  # type: ignore[attr-defined]
            if run.path not in screen.selected:
                await pilot.press("space")
            await pilot.press("down")
        await app_until(
            pilot,
            lambda: len(screen.chosen()) == 8 and len(screen.curves) == 8,
            why=lambda: (len(screen.chosen()), len(screen.curves), screen.selected),
        )
        await app_until(pilot, lambda: "steered (LR or length)" in screen_text(app))
        legend = screen.query_one("#legend", Static).content
        assert isinstance(legend, Text)
        swatches = [str(span.style) for span in legend.spans if "color(" in str(span.style)]
        assert swatches == [f"color({test})" for test, _ in RUN_COLORS[:8]]
        # The steered run's one applied act (not the refused one) is a vertical line across the plot
        # in that run's lighter shade: a column of "│" in that colour.
        steered = next(r for r in screen.runs if r.name.startswith("20261127-170000"))
        assert [p.step for p in screen.curves[steered.path][1].steered] == [1000]
        plot = screen.query_one("#overlay", Static).content
        assert isinstance(plot, Text)
        shade = Color.from_ansi(RUN_COLORS[7][1])
        marks = [
            s for s in plot.spans if "│" in plot.plain[s.start : s.end] and Style.parse(str(s.style)).color == shade
        ]
        assert len(marks) >= 5, "no steering line drawn"
        await pilot.press("q")  # the footer's Quit: nothing trains, so the app leaves at once
        await app_until(pilot, lambda: app.return_code is not None)
