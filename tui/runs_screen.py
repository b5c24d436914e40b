"""The runs screen: every run under the runs folder, and their test-accuracy curves overlaid."""

from __future__ import annotations

import time
from pathlib import Path

import plotext as plt
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from engine.runs import RunSummary, accuracy_curve, list_runs

COLORS = ["green", "cyan", "orange", "magenta", "blue", "red", "yellow", "white"]


class RunsScreen(ModalScreen[None]):
    """space: select a run for the overlay; r / esc: close."""

    BINDINGS = [
        Binding("space", "toggle_run", "Overlay on/off"),
        Binding("r,escape", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    RunsScreen { align: center middle; }
    RunsScreen > Vertical { width: 95%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    RunsScreen DataTable { height: auto; max-height: 40%; }
    RunsScreen #overlay { height: 1fr; }
    """

    def __init__(self, root: Path, current: str = "") -> None:
        super().__init__()
        self.root = root
        self.runs: list[RunSummary] = list_runs(root)
        self.selected: set[str] = {r.path for r in self.runs if Path(r.path).resolve() == Path(current).resolve()}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"runs in {self.root}/ · space: overlay test accuracy · r/esc: close", classes="hint")
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static(id="overlay")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "name", "state", "recipe", "data", "epochs", "best acc", "started")
        for r in self.runs:
            started = time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
            best = f"{100 * r.best_accuracy:.2f}%" if r.best_accuracy is not None else "--"
            table.add_row(self._mark(r), r.name, r.state, r.recipe, Path(r.data).name or r.data,
                          f"{r.epochs_done}/{r.epochs}", best, started, key=r.path)  # fmt: skip
        if not self.runs:
            self.query_one("#overlay", Static).update(Text(f"no runs under {self.root}/", style="dim"))
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

    def draw(self) -> None:
        overlay = self.query_one("#overlay", Static)
        chosen = [r for r in self.runs if r.path in self.selected]
        width, height = overlay.content_size.width, overlay.content_size.height
        if not chosen or width < 20 or height < 5:
            overlay.update(Text("select runs with space to overlay their test accuracy", style="dim"))
            return
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("clear")
        low, high = 100.0, 0.0
        for i, run in enumerate(chosen):
            xs, ys = accuracy_curve(Path(run.path))
            if xs:
                plt.plot(xs, ys, marker="braille", color=COLORS[i % len(COLORS)], label=run.name[-30:])
                low, high = min(low, *ys), max(high, *ys)
        if low <= high:  # a percentage axis: never below 0 or above 100, whatever plotext would pick
            pad = max(2.0, (high - low) * 0.1)
            plt.ylim(max(0.0, low - pad), min(100.0, high + pad))
        plt.xlabel("epoch")
        plt.ylabel("test accuracy %")
        overlay.update(Text.from_ansi(plt.build(), no_wrap=True))
