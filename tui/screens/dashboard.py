"""The dashboard screen: the panes of one run, redrawn on a budget.

Text panes redraw a few times a second and only when the run state changed; plots redraw at
most ``refresh`` times a second and only when their data changed; the device pane when a
telemetry sample or the run's start arrives. The screen reads the run state; it never talks
to the trainer (the app and its controller do)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer

from tui.state import RunState
from tui.telemetry import DeviceSample
from tui.view_settings import ViewSettings, load_view, save_view
from tui.widgets.classes import ClassesPane
from tui.widgets.device import DevicePane
from tui.widgets.log import LogPane
from tui.widgets.plots import AccuracyPlot, LossPlot, LrPlot, PlotPane
from tui.widgets.progress import ProgressPane, RunHeader

_NEVER = object()
PLOT_VIEWS = (("loss", "accuracy", "lr"), ("loss",), ("accuracy",), ("lr",))
"""All plots, then each alone: one big plot reads better in a small terminal."""


class DashboardScreen(Screen[None]):
    """Header, plots, progress, device, per-class accuracy, log and footer."""

    def __init__(self, state: RunState, refresh_hz: float) -> None:
        super().__init__()
        self.state = state
        self.refresh_hz = refresh_hz
        self.attached = False
        self.sample: DeviceSample | None = None
        self._plot_view = 0
        self.forget_shown()

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield LossPlot(self.state, max_fps=self.refresh_hz, id="loss")
                yield AccuracyPlot(self.state, max_fps=self.refresh_hz, id="accuracy")
                yield LrPlot(self.state, max_fps=self.refresh_hz, id="lr")
            with Vertical(id="side"):
                yield ProgressPane(id="progress")
                yield DevicePane(id="device")
                yield ClassesPane(id="classes")
        yield LogPane(id="log", max_lines=2000, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        for pane, title in (("#progress", "progress"), ("#device", "device"),
                            ("#classes", "per-class accuracy"), ("#log", "log")):  # fmt: skip
            self.query_one(pane).border_title = title
        self.app.begin_capture_print(self.query_one(LogPane), stdout=True, stderr=True)
        view = self.view = load_view()  # as the user left it, in any earlier session
        loss = self.query_one(LossPlot)
        loss.log_scale, loss.smoothing = view.log_scale, view.smoothing
        self._show_plot_view(view.plot_view % len(PLOT_VIEWS))

    def fit(self, width: int, height: int) -> None:
        """Small terminals: a narrower side column, a shorter log, a one-line device pane, no LR plot."""
        self.set_class(width < 100, "-narrow")
        with contextlib.suppress(NoMatches):  # (not composed yet)
            footer = self.query_one(Footer)
            # Narrow: no palette hint (Ctrl+P still opens it), so that every footer key, q and ? the
            # last of them, is on screen at 80 columns.
            footer.show_command_palette = width >= 100
        if self.has_class("-short") != (height < 30):
            self.set_class(height < 30, "-short")
            self.show_device()

    def follow(self, state: RunState) -> None:
        """Show another run state (a new run started from this dashboard)."""
        self.state = state
        for plot in self.query(PlotPane):
            plot.state = state
        self.forget_shown()

    def forget_shown(self) -> None:
        """Everything is redrawn at the next text refresh."""
        self._shown_version = -1
        self._shown_header: tuple[object, ...] = ("never",)
        self._shown_eval: object = _NEVER
        self._shown_started: object = _NEVER

    # -- drawing on a budget ------------------------------------------------------------------
    def refresh_text(self) -> None:
        state = self.state
        log = self.query_one(LogPane)
        for level, line in state.drain_log():
            log.write(f"[{level}] {line}" if level not in ("info", "output") else line)
        if not log.is_current():  # a layout change after the last write left the newest line out of view
            log.scroll_end(animate=False, immediate=False, x_axis=False)
        self._mark_more_classes()
        if state.version == self._shown_version:
            return
        self._shown_version = state.version
        self.query_one(ProgressPane).show(state)
        # The other panes change rarely: re-render them only when their inputs changed.
        header_key = (
            id(state.started),
            state.message if state.started is None else "",
            id(state.failed),
            self.attached,
            state.lr_scale,  # steering shows in the header too
            state.epochs,
        )
        if header_key != self._shown_header:
            self._shown_header = header_key
            self.query_one(RunHeader).show(state, attached=self.attached)
        if state.last_eval is not self._shown_eval:
            self._shown_eval = state.last_eval
            self.query_one(ClassesPane).show(state.last_eval)
        if state.started is not self._shown_started:
            self._shown_started = state.started
            self.show_device()

    def _mark_more_classes(self) -> None:
        """A per-class table taller than its pane says so (a short terminal shows a few rows)."""
        pane = self.query_one(ClassesPane)
        if pane.border_subtitle != (subtitle := self._classes_subtitle()):
            pane.border_subtitle = subtitle

    def _classes_subtitle(self) -> str:
        pane = self.query_one(ClassesPane)
        evaluation = self.state.last_eval
        lines = 2 + len(evaluation.class_names) if evaluation is not None else 0  # title, header, a row each
        below = lines - pane.scrollable_content_region.height - round(pane.scroll_offset.y)
        # A count of rows would be wrong when the title wraps: say what the whole table holds.
        return f"↓ scroll for all {len(evaluation.class_names)} classes" if evaluation and below > 0 else ""

    def refresh_plots(self) -> None:
        for plot in self.query(PlotPane):
            plot.maybe_redraw()

    def show_device(self, sample: DeviceSample | object | None = _NEVER) -> None:
        """The device pane, with a new telemetry ``sample`` when given (None: the trainer is gone)."""
        if sample is not _NEVER:
            self.sample = sample  # type: ignore[assignment]
        s = self.state.started
        with contextlib.suppress(NoMatches):  # not composed yet, or tearing down: shown at the next refresh
            pane = self.query_one(DevicePane)
            pane.compact = self.has_class("-short")
            pane.show(
                s.device if s else "", s.device_name if s else "", s.torch_version if s else "",
                s.cuda_version if s else "", s.num_threads if s else 0, self.sample,
            )  # fmt: skip

    def unsettled(self) -> list[str]:
        """What is not shown yet (empty: settled)."""
        log = self.query_one(LogPane)
        pending = [f"{len(self.state.log)} log lines to write"] if self.state.log else []
        if log.waiting_for_size():
            pending.append("log lines waiting for the pane's size")
        if not log.is_current():
            pending.append(f"log at line {log.scroll_offset.y} of {log.max_scroll_y}")
        if self._shown_version != self.state.version:
            pending.append(f"text panes at version {self._shown_version} of {self.state.version}")
        if self.query_one(ClassesPane).border_subtitle != self._classes_subtitle():
            pending.append("the per-class pane's note of hidden rows")
        return pending + [f"plot {p.id} not redrawn" for p in self.query(PlotPane) if not p.is_current()]

    # -- views -------------------------------------------------------------------------------
    def cycle_plots(self) -> None:
        self._show_plot_view((self._plot_view + 1) % len(PLOT_VIEWS))
        self._keep_view()

    def _show_plot_view(self, index: int) -> None:
        self._plot_view = index
        alone = len(PLOT_VIEWS[index]) == 1
        for plot in self.query(PlotPane):
            if not alone:  # all of them: the stylesheet decides (a short terminal leaves the LR plot out)
                plot.styles.clear_rule("display")
                plot.styles.clear_rule("height")
                continue
            plot.display = plot.id in PLOT_VIEWS[index]
            plot.styles.height = "1fr"

    def _keep_view(self) -> None:
        loss = self.query_one(LossPlot)
        self.view = ViewSettings(loss.log_scale, loss.smoothing, self._plot_view)
        save_view(self.view)

    def scroll_log(self, pages: int) -> None:
        log = self.query_one(LogPane)
        log.scroll_to(y=log.scroll_offset.y + pages * max(1, log.scrollable_content_region.height - 1), animate=False)

    def change_loss_plot(self, change: Callable[[LossPlot], None]) -> None:
        plot = self.query_one(LossPlot)
        change(plot)
        plot.maybe_redraw(now=float("inf"))  # a key's effect shows at once, not at the next tick
        self._keep_view()
