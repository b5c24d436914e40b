"""The runs screen: every run under the runs folder; the selected ones compared as overlaid
test-accuracy curves or as a side-by-side table of their configs and results.

Runs are read in a worker thread from each run's small summary.json, so no key waits on the
disk, however many and however long the runs are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import plotext as plt
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from engine.run.catalog import find_runs
from engine.run.config import NOT_COMPARED
from engine.run.summary import RunSummary
from engine.run.wording import duration
from tui.format import pct
from tui.widgets.plots import percent_range

COLORS = ["green", "cyan", "orange", "magenta", "blue", "red", "yellow", "white"]


def compare_table(runs: list[RunSummary]) -> Table:
    """Runs side by side: results first, then every config option, the ones that differ first
    and highlighted."""
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("", no_wrap=True, style="dim")
    for run in runs:
        table.add_column(run.name[-24:], no_wrap=True, overflow="ellipsis", max_width=28)
    table.add_row("best acc", *(pct(r.best_accuracy, 2) for r in runs))
    table.add_row("final acc", *(pct(r.final_accuracy, 2) for r in runs))
    table.add_row("time", *(duration(r.duration) for r in runs))
    table.add_row("epochs", *(f"{r.epochs_done}/{r.epochs}" for r in runs))
    table.add_row("state", *(r.state for r in runs), end_section=True)
    keys = sorted({k for r in runs for k in r.config if k not in NOT_COMPARED})

    def values(key: str) -> list[str]:
        return [_option(r.config.get(key, "--")) for r in runs]

    differ = [k for k in keys if len(set(values(k))) > 1]
    for key in differ:
        table.add_row(Text(f"≠ {key}", style="bold yellow"), *(Text(v, style="bold yellow") for v in values(key)))
    for key in (k for k in keys if k not in differ):
        table.add_row(key, *(Text(v, style="dim") for v in values(key)))
    return table


def _option(value: Any) -> str:
    return "--" if value in (None, "") else f"{value:g}" if isinstance(value, float) else str(value)


class RunsScreen(ModalScreen[None]):
    """space: select a run; t: curves or configs; r / esc: close."""

    BINDINGS = [
        Binding("space", "toggle_run", "Select"),
        Binding("t", "toggle_view", "Curves/configs"),
        Binding("r,escape", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    RunsScreen { align: center middle; }
    RunsScreen > Vertical { width: 95%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    RunsScreen DataTable { height: auto; max-height: 40%; }
    RunsScreen #overlay { height: 1fr; }
    RunsScreen #compare { height: 1fr; display: none; }
    RunsScreen.-configs #overlay { display: none; }
    RunsScreen.-configs #compare { display: block; }
    """

    def __init__(self, root: Path, current: str = "") -> None:
        super().__init__()
        self.root = root
        self.current = current
        self.runs: list[RunSummary] = []
        self.selected: set[str] = set()
        self.loaded = False  # the worker has read the runs (tests wait on it)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                "your runs (./runs, this run's folder, the index) · space: select · t: curves/configs · r/esc: close",
                classes="hint",
            )
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static(Text("reading runs…", style="dim"), id="overlay")
            with VerticalScroll(id="compare"):
                yield Static(id="compare-table")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "", "state", "best acc", "final", "epochs", "time", "name", "recipe", "data", "started"
        )
        self._read_runs()

    @work(thread=True, exclusive=True)
    def _read_runs(self) -> None:
        # Summaries: small files, but a slow disk must not freeze the keys.
        runs = [r for r in find_runs(also=(self.root,)) if not r.archived]
        self.app.call_from_thread(self._show_runs, runs)

    def _show_runs(self, runs: list[RunSummary]) -> None:
        self.runs = runs
        current = Path(self.current).resolve() if self.current else None
        self.selected = {r.path for r in runs if current is not None and Path(r.path).resolve() == current}
        table = self.query_one(DataTable)
        for r in runs:
            started = time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
            table.add_row(self._mark(r), r.state, pct(r.best_accuracy, 2), pct(r.final_accuracy, 2),
                          f"{r.epochs_done}/{r.epochs}", duration(r.duration), r.name, r.recipe,
                          Path(r.data).name or r.data, started, key=r.path)  # fmt: skip
        current_rows = [i for i, r in enumerate(runs) if r.path in self.selected]
        if current_rows:  # the run on screen: newest runs come last, maybe below the fold
            table.move_cursor(row=current_rows[0])
        self.loaded = True
        if not runs:
            self.query_one("#overlay", Static).update(Text("no runs yet", style="dim"))
            return
        self.call_after_refresh(self.draw)

    def _mark(self, run: RunSummary) -> str:
        return "●" if run.path in self.selected else " "

    def action_toggle_run(self) -> None:
        table = self.query_one(DataTable)
        if not self.runs:
            return
        run = self.runs[table.cursor_row]
        self.selected ^= {run.path}
        table.update_cell(run.path, table.ordered_columns[0].key, self._mark(run))
        self.draw()

    def action_toggle_view(self) -> None:
        self.toggle_class("-configs")
        self.call_after_refresh(self.draw)

    def chosen(self) -> list[RunSummary]:
        return [r for r in self.runs if r.path in self.selected]

    def draw(self) -> None:
        chosen = self.chosen()
        hint = Text("select runs with space to compare them", style="dim")
        self.query_one("#compare-table", Static).update(compare_table(chosen) if chosen else hint)
        overlay = self.query_one("#overlay", Static)
        width, height = overlay.content_size.width, overlay.content_size.height
        if not chosen or width < 20 or height < 5:
            overlay.update(hint)
            return
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("clear")
        low, high = 100.0, 0.0
        for i, run in enumerate(chosen):
            if run.curve:
                xs, ys = [x for x, _ in run.curve], [y for _, y in run.curve]
                plt.plot(xs, ys, marker="braille", color=COLORS[i % len(COLORS)], label=run.name[-30:])
                low, high = min(low, *ys), max(high, *ys)
        if low <= high:
            plt.ylim(*percent_range([low, high]))
        plt.xlabel("epoch")
        plt.ylabel("test accuracy %")
        overlay.update(Text.from_ansi(plt.build(), no_wrap=True))
