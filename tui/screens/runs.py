"""The runs screen: your runs (./runs, the run's own folder, the index); the selected ones
compared as overlaid curves (accuracy or loss, against epoch, step or training time) or as a
side-by-side table of their configs and results. ``/`` filters, ``o`` changes the order.

Runs are read in a worker thread from each run's small summary.json, and the curves of the
selected runs from their events in another, so no key waits on the disk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import plotext as plt
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from engine.run.catalog import find_runs, sort_runs
from engine.run.curves import AXES, METRICS, RunCurves, axis_label, read_curves
from engine.run.field_kinds import NOT_COMPARED
from engine.run.summary import RunSummary
from engine.run.wording import distinct, duration
from tui.format import pct
from tui.series import smoothed
from tui.view_settings import load_view
from tui.widgets.plots import new_figure, percent_range

# One (test, train) pair of 256-colour codes per compared run: plotext and Rich read the same
# numbers, so the legend's swatch is the curve's colour (plotext's own names, "orange" among
# them, are not Rich styles). Ten pairs before a colour comes back.
RUN_COLORS = [(2, 10), (6, 14), (3, 11), (5, 13), (4, 12), (1, 9), (208, 215), (8, 7), (99, 141), (37, 122)]


def run_color(i: int, part: str = "test") -> int:
    """The 256-colour code of the ``i``-th compared run's test curve (its train curve: lighter)."""
    test, train = RUN_COLORS[i % len(RUN_COLORS)]
    return test if part == "test" else train


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
    table.add_row("state", *(r.state for r in runs), end_section=not any(r.steered for r in runs))
    acts = max((len(r.steered) for r in runs), default=0)
    for i in range(min(acts, 6)):  # how each run was steered while it trained, in order
        more = i == 5 and acts > 6
        cells = [("…" if more and len(r.steered) > 6 else r.steered[i]) if i < len(r.steered) else "" for r in runs]
        table.add_row("steered" if i == 0 else "", *cells, end_section=i == min(acts, 6) - 1)
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
    """space: select a run; t: curves or configs; v: accuracy or loss; x: epoch, step or time;
    /: filter; o: order; r / esc: close."""

    BINDINGS = [
        Binding("space", "toggle_run", "Select"),
        Binding("t", "toggle_view", "Curves/configs"),
        Binding("v", "toggle_metric", "Acc/loss"),
        Binding("x", "cycle_axis", "X axis"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "cycle_order", "Order"),
        Binding("g", "gallery", "Mistakes"),
        Binding("r,escape", "close", "Close"),
        Binding("q", "app.quit_app", "Quit"),
    ]
    ORDERS = ("started", "best", "name", "state")
    AUTO_FOCUS = "DataTable"
    DEFAULT_CSS = """
    RunsScreen { align: center middle; }
    RunsScreen > Vertical { width: 95%; height: 90%; border: thick $primary; background: $surface; padding: 0 1; }
    RunsScreen DataTable { height: auto; max-height: 40%; }
    RunsScreen #overlay { height: 1fr; }
    RunsScreen #legend { height: auto; }
    RunsScreen #filter { display: none; }
    RunsScreen.-filtering #filter { display: block; }
    RunsScreen #compare { height: 1fr; display: none; }
    RunsScreen.-configs #overlay { display: none; }
    RunsScreen.-configs #compare { display: block; }
    """

    def __init__(self, root: Path, current: str = "", selected: list[str] | None = None) -> None:
        super().__init__()
        self.root = root
        self.current = current
        self.preselected = selected or []  # (the sweep screen's best trials, compared at once)
        self.runs: list[RunSummary] = []
        self.all_runs: list[RunSummary] = []
        self.selected: set[str] = set()
        self.loaded = False  # the worker has read the runs (tests wait on it)
        self.metric, self.axis, self.order, self.filter_text = "accuracy", "epoch", "started", ""
        self.curves: dict[str, tuple[int, RunCurves]] = {}  # path -> (events size, curves)
        self.smoothing = load_view().smoothing

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                "your runs · space: select · t: curves/configs · v: acc/loss · x: epoch/step/time · /: filter · "
                "o: order · r/esc: close · q: quit",
                classes="hint",
            )
            yield Input(placeholder="filter: name, tag, notes, recipe, data (enter: apply, esc: clear)", id="filter")
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static(Text("reading runs…", style="dim"), id="overlay")
            yield Static(id="legend")
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
        self.all_runs = runs
        wanted = {Path(p).resolve() for p in [*self.preselected, *([self.current] if self.current else [])]}
        self.selected = {r.path for r in runs if Path(r.path).resolve() in wanted}
        self.loaded = True
        self._fill_table()

    def _fill_table(self) -> None:
        shown = [r for r in self.all_runs if not self.filter_text or r.matches(self.filter_text)]
        self.runs = sort_runs(shown, self.order, reverse=self.order == "best")  # the best runs first
        table = self.query_one(DataTable)
        table.clear()
        names = distinct([r.title + "".join(f" #{t}" for t in r.tags) for r in self.runs], 36)
        for r, name in zip(self.runs, names, strict=True):
            started = time.strftime("%m-%d %H:%M", time.localtime(r.started)) if r.started else "?"
            table.add_row(self._mark(r), r.state, pct(r.best_accuracy, 2), pct(r.final_accuracy, 2),
                          f"{r.epochs_done}/{r.epochs}", duration(r.duration), name, r.recipe,
                          Path(r.data).name or r.data, started, key=r.path)  # fmt: skip
        current_rows = [i for i, r in enumerate(self.runs) if r.path in self.selected]
        if current_rows:  # the run on screen may be below the fold
            table.move_cursor(row=current_rows[0])
        if not self.runs:
            what = f"no runs match {self.filter_text!r}" if self.filter_text else "no runs yet"
            self.query_one("#overlay", Static).update(Text(what, style="dim"))
            return
        self._read_curves()

    def _mark(self, run: RunSummary) -> str:
        return "●" if run.path in self.selected else " "

    def action_toggle_run(self) -> None:
        table = self.query_one(DataTable)
        if not self.runs:
            return
        run = self.runs[table.cursor_row]
        self.selected ^= {run.path}
        table.update_cell(run.path, table.ordered_columns[0].key, self._mark(run))
        self._read_curves()

    def action_gallery(self) -> None:
        """The highlighted run's most confident mistakes (its latest evaluation's gallery)."""
        from engine.run.gallery import read_gallery
        from tui.screens.gallery import GalleryScreen, confident_title

        gallery = read_gallery(Path(self.runs[self.query_one(DataTable).cursor_row].path)) if self.runs else None
        if gallery is None or not gallery.mistakes:
            self.notify("no mistakes gallery for this run (written after each evaluation)", severity="warning")
            return
        self.app.push_screen(GalleryScreen(gallery, gallery.most_confident(), confident_title(gallery)))

    def action_toggle_view(self) -> None:
        self.toggle_class("-configs")
        self.call_after_refresh(self.draw)

    def action_toggle_metric(self) -> None:
        self.metric = METRICS[(METRICS.index(self.metric) + 1) % len(METRICS)]
        self.draw()

    def action_cycle_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self.draw()

    def action_cycle_order(self) -> None:
        self.order = self.ORDERS[(self.ORDERS.index(self.order) + 1) % len(self.ORDERS)]
        self.notify(f"order: {self.order}", timeout=1.5)
        self._fill_table()

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    def action_close(self) -> None:
        if self.has_class("-filtering"):  # esc leaves the filter first, then the screen
            self._end_filter(clear=True)
            return
        self.dismiss()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.filter_text = event.value.strip()
        self._end_filter(clear=False)
        self._fill_table()

    def _end_filter(self, *, clear: bool) -> None:
        if clear:
            self.query_one("#filter", Input).value = ""
            if self.filter_text:
                self.filter_text = ""
                self._fill_table()
        self.remove_class("-filtering")
        self.query_one(DataTable).focus()

    @work(thread=True, exclusive=True, group="curves")
    def _read_curves(self) -> None:
        """The selected runs' curves from their events (read again only when a run's log grew)."""
        for run in self.chosen():
            events = Path(run.path) / "events.jsonl"
            try:
                size = events.stat().st_size
            except OSError:
                continue
            if self.curves.get(run.path, (-1,))[0] != size:
                self.curves[run.path] = (size, read_curves(Path(run.path)))
        self.app.call_from_thread(self.draw)

    def chosen(self) -> list[RunSummary]:
        return [r for r in self.runs if r.path in self.selected]

    def draw(self) -> None:
        chosen = self.chosen()
        hint = Text("select runs with space to compare them", style="dim")
        self.query_one("#compare-table", Static).update(compare_table(chosen) if chosen else hint)
        overlay = self.query_one("#overlay", Static)
        legend = self.query_one("#legend", Static)
        width, height = overlay.content_size.width, overlay.content_size.height
        if not chosen or width < 20 or height < 5:
            overlay.update(hint)
            legend.update("")
            return
        overlay.update(Text.from_ansi(self._plot(chosen, width, height), no_wrap=True))
        legend.update(self._legend(chosen))

    def _plot(self, chosen: list[RunSummary], width: int, height: int) -> str:
        """The selected runs' curves: test as a line with a dot per epoch, train fainter (the train
        loss smoothed as the main plot smooths it). No plotext legend: it would cover the data."""
        new_figure(width, height)
        values: list[float] = []
        for i, run in enumerate(chosen):
            curves = self._curves(run)
            for part, points in curves.series(self.metric).items():
                if not points:
                    continue
                xs, ys = [p.x(self.axis) for p, _ in points], [y for _, y in points]
                if part == "train" and self.metric == "loss":
                    # The main plot's smoothing, as the user left it (per report here: reports are coarser
                    # than steps, so the same weight reaches a little further).
                    ys = smoothed(ys, 1 - self.smoothing) if self.smoothing else ys
                marker = "braille" if part == "train" else "dot" if len(xs) > 1 else "●"
                plt.plot(xs, ys, marker=marker, color=run_color(i, part))
                values += ys
            for act in curves.steered:  # where this run was steered, in its own colour (as on the live plot)
                plt.vline(act.x(self.axis), color=run_color(i, "train"))
        if values and self.metric == "accuracy":
            plt.ylim(*percent_range(values))
        plt.xlabel(axis_label(self.axis))
        plt.ylabel("accuracy %" if self.metric == "accuracy" else "loss")
        return str(plt.build())

    def _curves(self, run: RunSummary) -> RunCurves:
        return self.curves.get(run.path, (0, RunCurves()))[1]

    def _legend(self, chosen: list[RunSummary]) -> Text:
        legend = Text()
        names = distinct([r.title for r in chosen], 40)
        for i, name in enumerate(names):
            legend.append("━━ ", style=f"color({run_color(i)})")
            legend.append(name + "   ")
        train = f"train (lighter shade{f', smoothing {self.smoothing:g}' if self.metric == 'loss' else ''})"
        marks = " · │ steered (LR or length)" if any(self._curves(r).steered for r in chosen) else ""
        legend.append(f"\n{self.metric}: test (a dot per epoch) and {train}{marks} · x: {axis_label(self.axis)}",
                      style="dim")  # fmt: skip
        return legend
