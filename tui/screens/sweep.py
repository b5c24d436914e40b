"""The sweep screen: a sweep's trials (state, values, best and latest accuracy, epochs, time,
device), best so far against time, accuracy against each swept value (a log axis for a log
range), Optuna's parameter importances; keys act on the highlighted trial's run.

It reads RUNS/<name>.sweep/trials.json, which the sweep rewrites every few seconds, so the
screen that started a sweep, one attached from another terminal and the browser view show the
same thing. Keys on a trial go to its run's control socket, as ``cifar-tui pause`` does."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plotext as plt
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from engine.run.wording import duration
from tui.format import pct
from tui.sweep_view import SweepView, TrialRow, best_so_far, by_param, read_sweep
from tui.widgets.plots import new_figure, percent_range

TrialAct = Callable[[Path, str], tuple[str, bool]]
"""What a key does to a trial's run (tui/sweep_keys.py: pause, prune, stop): what was said, and
whether the trainer took it."""

STATE_STYLE = {"completed": "green", "running": "bold cyan", "pruned": "yellow", "failed": "red",
               "interrupted": "magenta", "waiting": "dim"}  # fmt: skip
POINT_COLOR = {"completed": "green", "pruned": "orange", "running": "cyan"}


def short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class SweepPlot(Static):
    """The plot pane: redrawn when its own size changes (the table above it grows as trials come)."""

    def on_resize(self) -> None:
        if isinstance(self.screen, SweepScreen):
            self.screen.redraw_plot()


class SweepScreen(Screen[None]):
    """enter: open the trial's run; p: pause/resume it; x: prune it; s: stop it; v: next plot;
    c: compare the best trials; q: quit."""

    BINDINGS = [
        Binding("enter", "open_trial", "Open run"),
        Binding("p", "pause_trial", "Pause"),
        Binding("x", "prune_trial", "Prune"),
        Binding("s", "stop_trial", "Stop trial"),
        Binding("v", "next_plot", "Plot"),
        Binding("c", "compare", "Compare best"),
        Binding("q", "app.quit_app", "Quit"),
    ]
    AUTO_FOCUS = "DataTable"
    DEFAULT_CSS = """
    SweepScreen #head { height: auto; padding: 0 1; }
    SweepScreen DataTable { height: auto; max-height: 45%; }
    SweepScreen #detail { height: 1; padding: 0 1; }
    SweepScreen #below { height: 1fr; min-height: 6; }
    SweepScreen #sweep-plot { width: 3fr; height: 1fr; }
    SweepScreen #importances { width: 1fr; min-width: 18; max-width: 30; height: 1fr; padding: 0 1;
                               border-left: solid $primary-darken-2; }
    """

    def __init__(self, folder: Path, refresh_s: float = 1.0, act: TrialAct | None = None) -> None:
        super().__init__()
        self.folder, self.refresh_s, self.act = folder, refresh_s, act
        self.view: SweepView | None = None
        self.plot_index = 0  # 0: best so far; k: accuracy against the k-th swept value
        self.loaded = False  # the file has been read once (tests wait on it)
        self._drawn: tuple[Any, ...] = ()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"reading {self.folder}…", style="dim"), id="head")
            yield DataTable(cursor_type="row", zebra_stripes=True)
            yield Static(id="detail")
            with Horizontal(id="below"):
                yield SweepPlot(id="sweep-plot")
                yield Static(id="importances")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.refresh_s, self._read)
        self._read()

    def redraw_plot(self) -> None:
        self._drawn = ()
        self.call_after_refresh(self._draw_below)

    @work(thread=True, exclusive=True)
    def _read(self) -> None:
        view = read_sweep(self.folder)  # a slow disk must not freeze the keys
        self.app.call_from_thread(self._show, view)

    def _show(self, view: SweepView | None) -> None:
        self.loaded = True
        if view is None:
            self.query_one("#head", Static).update(
                Text(f"no trials yet in {self.folder} (the sweep writes trials.json as it starts)", style="dim")
            )
            return
        self.view = view
        self.query_one("#head", Static).update(self._head(view))
        self._fill_table(view)
        self._show_detail()
        self.call_after_refresh(self._draw_below)  # once the table's new rows have their room

    def _head(self, view: SweepView) -> Text:
        counts = view.counts()
        done = sum(counts.get(s, 0) for s in ("completed", "pruned", "failed"))
        text = Text(f"sweep {view.name}", style="bold")
        text.append(f" · {done}/{view.trials_asked} trials done · ")
        text.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none started")
        text.append(f" · {view.sampler}, pruner {view.pruner} · ")
        running = view.running()
        text.append("running" if running else "not running", style="bold cyan" if running else "dim")
        if (best := view.best()) is not None:
            text.append(f"\nbest: trial {best.number} at {pct(best.best, 2)} ("
                        + ", ".join(f"{k} {short(v)}" for k, v in best.params.items()) + ")")  # fmt: skip
        return text

    def _fill_table(self, view: SweepView) -> None:
        table = self.query_one(DataTable)
        names = view.param_names
        if not table.columns:
            table.add_columns("#", "state", *names, "best", "now", "ep", "time", "device")
        row_key = self._highlighted()
        table.clear()
        for t in view.trials:
            state = Text(t.state, style=STATE_STYLE.get(t.state, ""))
            table.add_row(str(t.number), state, *(short(t.params.get(n, "")) for n in names), pct(t.best),
                          pct(t.latest), str(t.epochs), duration(t.seconds), t.device, key=str(t.number))  # fmt: skip
        if row_key is not None and row_key in table.rows:
            table.move_cursor(row=table.get_row_index(row_key))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        """The highlighted trial in a line: why it failed, where its run is."""
        t = self.trial()
        if t is None:
            self.query_one("#detail", Static).update("")
            return
        text = Text(f"trial {t.number} {t.state}", style=STATE_STYLE.get(t.state, ""))
        if t.cause:
            text.append(f": {t.cause}", style="bold")
        text.append(f" · run {Path(t.run_dir).name if t.run_dir else '(not started)'}", style="dim")
        if seeds := self.view.seeds.get(t.number) if self.view else None:
            sd = statistics.stdev(seeds) if len(seeds) > 1 else 0.0
            text.append(f" · {len(seeds)} seeds: {statistics.fmean(seeds):.1%} ± {sd:.1%}", style="bold")
        if t.curve:
            text.append(" · per epoch " + " ".join(f"{v:.0%}" for v in t.curve[-8:]), style="dim")
        self.query_one("#detail", Static).update(text)

    def _highlighted(self) -> Any:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key

    def trial(self) -> TrialRow | None:
        """The highlighted trial."""
        key = self._highlighted()
        if self.view is None or key is None:
            return None
        return next((t for t in self.view.trials if str(t.number) == key.value), None)

    def plot_name(self) -> str:
        names = self.view.param_names if self.view else []
        return names[self.plot_index - 1] if 0 < self.plot_index <= len(names) else ""

    def _draw_below(self) -> None:
        if self.view is None:
            return
        plot = self.query_one("#sweep-plot", Static)
        width, height = plot.content_size.width, plot.content_size.height
        key = (width, height, self.plot_index, [(t.number, t.best, t.state, t.ended) for t in self.view.trials])
        if key == self._drawn:
            return
        self._drawn = key
        self.query_one("#importances", Static).update(self._importances(self.view))
        if width < 20 or height < 5:
            plot.update(Text("(too small to plot)", style="dim"))
            return
        name = self.plot_name()
        drawn = self._param_plot(self.view, name, width, height) if name else self._best_plot(width, height)
        plot.update(drawn if isinstance(drawn, Text) else Text.from_ansi(drawn, no_wrap=True))

    def _best_plot(self, width: int, height: int) -> str | Text:
        assert self.view is not None
        points = best_so_far(self.view.trials)
        if not points:
            return Text("best so far against time: once a trial has ended (v: accuracy against each value)",
                        style="dim")  # fmt: skip
        new_figure(width, height)
        xs, ys = [x for x, _ in points], [y for _, y in points]
        steps_x, steps_y = [xs[0]], [ys[0]]
        for x, y in zip(xs[1:], ys[1:], strict=True):  # flat until a trial beats the best, then up
            steps_x += [x, x]
            steps_y += [steps_y[-1], y]
        plt.plot(steps_x, steps_y, marker="braille", color="green")
        plt.scatter(xs, ys, marker="●", color="green")
        plt.ylim(*percent_range(ys))
        plt.title("best test accuracy so far (v: against each value)")
        plt.xlabel("minutes since the first trial")
        return str(plt.build())

    def _param_plot(self, view: SweepView, name: str, width: int, height: int) -> str | Text:
        points = by_param(view.trials, name)
        if not points:
            return Text(f"accuracy against {name}: once a trial has reported an epoch", style="dim")
        new_figure(width, height)
        values: list[float] = []
        seen = {str(v) for pts in points.values() for v, _ in pts}
        labels = [c for c in view.choices(name) if c in seen] + sorted(seen - set(view.choices(name)))
        for state, pts in points.items():
            if view.is_choice(name):
                xs: list[float] = [float(labels.index(str(v))) for v, _ in pts]
            else:
                xs = [float(v) for v, _ in pts]
            ys = [y for _, y in pts]
            plt.scatter(xs, ys, marker="●", color=POINT_COLOR.get(state, "white"), label=state)
            values += ys
        if view.is_choice(name):
            plt.xticks(list(range(len(labels))), labels)
            plt.xlim(-0.5, len(labels) - 0.5)  # (room either side: no point on the frame)
        elif view.is_log(name):
            plt.xscale("log")
        plt.ylim(*percent_range(values))
        scale = " (log scale)" if view.is_log(name) else ""
        plt.title(f"best test accuracy against {name}{scale} (v: next)")
        return str(plt.build())

    def _importances(self, view: SweepView) -> Text:
        text = Text("importance (Optuna)\n", style="bold")
        if not view.importances:
            text.append("after 3 completed trials", style="dim")
            return text
        width = 10
        for name, value in sorted(view.importances.items(), key=lambda kv: -kv[1]):
            bar = "█" * max(1, round(value * width)) if value > 0 else ""
            text.append(f"{name}\n", style="")
            text.append(f"{bar:<{width}} {value:.2f}\n", style="cyan")
        return text

    # --- keys -----------------------------------------------------------------------------------
    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_trial()  # (the table takes enter for itself)

    def action_next_plot(self) -> None:
        self.plot_index = (self.plot_index + 1) % (1 + len(self.view.param_names if self.view else []))
        self._draw_below()

    def action_open_trial(self) -> None:
        trial = self.trial()
        if trial is None or not trial.run_dir or not Path(trial.run_dir).is_dir():
            self.notify("this trial has no run yet", severity="warning")
            return
        self.app.exit(("attach", trial.run_dir))

    def action_pause_trial(self) -> None:
        self._act("pause")

    def action_prune_trial(self) -> None:
        self._act("prune")

    def action_stop_trial(self) -> None:
        self._act("stop")

    def _act(self, what: str) -> None:
        trial = self.trial()
        if trial is None or trial.state != "running" or self.act is None:
            self.notify(f"{what}: highlight a running trial", severity="warning")
            return
        said, ok = self.act(Path(trial.run_dir), what)
        self.notify(f"trial {trial.number}: {said}", severity="information" if ok else "error")

    def action_compare(self) -> None:
        from tui.screens.runs import RunsScreen

        if self.view is None:
            return
        top = [t.run_dir for t in self.view.trials if t.best is not None and t.run_dir][:5]
        if not top:
            self.notify("no trial has an accuracy yet", severity="warning")
            return
        self.app.push_screen(RunsScreen(Path(top[0]).parent, selected=top))
