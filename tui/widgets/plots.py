"""Loss and accuracy curves drawn with plotext, on a budget.

A plot redraws only when its data changed or it was resized, and at most
``max_fps`` times a second; between redraws Textual shows the cached text. Each
series holds a fixed number of points (tui.series), so a long run costs the same
to draw as a short one.
"""

from __future__ import annotations

import math
import time
from typing import Any

import plotext as plt
from rich.text import Text
from textual.widget import Widget

from engine.run.steering import EPOCHS, LR_SCALE
from tui.series import smoothed
from tui.state import RunState
from tui.view_settings import SMOOTHING

_SUBTLE = "gray"


def new_figure(width: int, height: int) -> None:
    """A fresh plotext figure of the pane's size. plotext would clip it to the terminal size it
    guesses, which is 80x24 where the output is not a terminal: the browser view (textual-serve
    talks over pipes) drew a 135-column pane's plot 80 columns wide."""
    plt.clear_figure()
    plt.limit_size(False, False)
    plt.plotsize(width, height)
    plt.theme("clear")


def percent_range(values: list[float]) -> tuple[float, float]:
    """A percentage axis around ``values``: a little room, never below 0 or above 100 (plotext
    alone pads one point into 47-141%)."""
    low, high = min(values), max(values)
    pad = max(2.0, (high - low) * 0.1)
    return max(0.0, low - pad), min(100.0, high + pad)


class PlotPane(Widget):
    """Base class: subclasses implement :meth:`draw` with plotext calls."""

    DEFAULT_CSS = """
    PlotPane { height: 1fr; min-height: 6; border-subtitle-align: right; }
    """

    def __init__(self, state: RunState, *, max_fps: float = 1.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_subtitle = "x: epochs"
        self.state = state
        self.max_fps = max_fps
        self._text: Text = Text("waiting for the first training steps…", style="dim")
        self._drawn_key: tuple[Any, ...] | None = None
        self._last_draw = 0.0
        self.draws = 0  # how many times plotext actually ran (tests and benchmarks read it)

    def data_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def draw(self, width: int, height: int) -> None:
        raise NotImplementedError

    def has_data(self) -> bool:
        return True

    def is_current(self) -> bool:
        """Whether what is shown reflects the latest data and size (or there is nothing to draw)."""
        width, height = self.content_size.width, self.content_size.height
        if width < 10 or height < 4 or not self.has_data():
            return True
        return self._drawn_key == (*self.data_key(), width, height)

    def maybe_redraw(self, now: float | None = None) -> bool:
        """Rebuild the plot if its data or size changed and the rate cap allows; True if it did."""
        now = time.monotonic() if now is None else now
        width, height = self.content_size.width, self.content_size.height
        key = (*self.data_key(), width, height)
        if key == self._drawn_key or width < 10 or height < 4 or not self.has_data():
            return False
        size_changed = self._drawn_key is None or self._drawn_key[-2:] != (width, height)
        if not size_changed and now - self._last_draw < 1.0 / self.max_fps:
            return False
        try:
            new_figure(width, height)
            self.draw(width, height)
            self._text = Text.from_ansi(plt.build(), no_wrap=True, end="")
        except Exception as exc:  # a plotting bug must never take the dashboard down
            self._text = Text(f"plot unavailable: {type(exc).__name__}: {exc}", style="red")
        self._drawn_key = key
        self._last_draw = now
        self.draws += 1
        self.refresh()
        return True

    def render(self) -> Text:
        return self._text


class LossPlot(PlotPane):
    """Training loss per step (raw faint, smoothed bright) and test loss per epoch."""

    def __init__(self, state: RunState, *, max_fps: float = 1.0, id: str | None = None) -> None:
        super().__init__(state, max_fps=max_fps, id=id)
        self.log_scale = False
        self.smoothing = 0.9

    def toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale

    def cycle_smoothing(self) -> None:
        self.smoothing = SMOOTHING[(SMOOTHING.index(self.smoothing) + 1) % len(SMOOTHING)]

    def data_key(self) -> tuple[Any, ...]:
        s = self.state
        return (s.train_loss.version, s.test_loss.version, s.requested_loss.version, self.log_scale, self.smoothing)

    def has_data(self) -> bool:
        return len(self.state.train_loss.points()[0]) > 1

    def draw(self, width: int, height: int) -> None:
        s = self.state
        xs, ys = s.train_loss.points()
        spe = max(1, s.steps_per_epoch)
        ex = [x / spe for x in xs]  # x in epochs: comparable with the per-epoch test loss
        tx, ty = s.test_loss.points()
        rx, ry = s.requested_loss.points()
        # A log axis needs positive values; a loss of exactly 0 (or a diverged one) keeps it linear.
        log = self.log_scale and min(ys + ty + ry) > 0
        if self.smoothing:
            plt.plot(ex, ys, marker="braille", color=_SUBTLE)
            # One stored point stands for `weight` raw steps: keep the smoothing's reach in steps.
            alpha = 1 - self.smoothing**s.train_loss.weight
            plt.plot(ex, smoothed(ys, alpha), marker="braille", color="cyan")
        else:
            plt.plot(ex, ys, marker="braille", color="cyan")
        if tx:
            plt.plot(tx, ty, marker="braille", color="orange")
        if rx:  # evaluate-now results (key e), where they were taken
            plt.scatter(rx, ry, marker="●", color="magenta")
        if log:
            plt.yscale("log")
        view = ("log" if log else "linear") + (f", smoothing {self.smoothing:g}" if self.smoothing else ", raw")
        # The legend is in the title, in words: plotext's own would cover the curves.
        now = " [magenta]● now[/]" if rx else ""
        self.border_title = f"loss · [cyan]━ train[/] [#d7875f]━ test[/]{now} · {view}"


class AccuracyPlot(PlotPane):
    """Test and train accuracy per epoch, and evaluate-now results where they were taken."""

    def __init__(self, state: RunState, *, max_fps: float = 1.0, id: str | None = None) -> None:
        super().__init__(state, max_fps=max_fps, id=id)
        self._text = Text("accuracy appears after the first epoch (e: evaluate now)", style="dim")

    def data_key(self) -> tuple[Any, ...]:
        s = self.state
        return (s.test_accuracy.version, s.requested_accuracy.version)

    def has_data(self) -> bool:
        return len(self.state.test_accuracy.points()[0]) + len(self.state.requested_accuracy.points()[0]) > 0

    def draw(self, width: int, height: int) -> None:
        s = self.state
        ax, ay = s.test_accuracy.points()
        tx, ty = s.train_accuracy.points()
        if ax:
            plt.plot(ax, ay, marker="braille" if len(ax) > 1 else "●", color="green")
            plt.plot(tx, ty, marker="braille" if len(tx) > 1 else "●", color="blue")
        rx, ry = s.requested_accuracy.points()
        if rx:
            plt.scatter(rx, ry, marker="●", color="magenta")
        shown = [*ay, *ty, *ry]
        if shown:
            plt.ylim(*percent_range(shown))
        now = " [magenta]● now[/]" if rx else ""
        self.border_title = f"accuracy % per epoch · [green]━ test[/] [blue]━ train[/]{now}"


class LrPlot(PlotPane):
    """The learning rate the optimiser used, per step: a small plot of its own, so its scale is
    never read as the accuracy's or the loss's."""

    DEFAULT_CSS = """
    LrPlot { height: 8; min-height: 5; }
    """

    def data_key(self) -> tuple[Any, ...]:
        return (self.state.learning_rate.version, len(self.state.steered))

    def has_data(self) -> bool:
        return len(self.state.learning_rate.points()[0]) > 1

    def draw(self, width: int, height: int) -> None:
        s = self.state
        spe = max(1, s.steps_per_epoch)
        lx, ly = s.learning_rate.points()
        plt.plot([x / spe for x in lx], ly, marker="braille", color="yellow")
        low, high = min(ly), max(ly)
        if high - low < 1e-12 * max(1.0, high):  # a constant LR: a flat line in the middle, not at an edge
            plt.ylim(low * 0.5, high * 1.5 if high else 1.0)
        acts = [e for e in s.steered if e.what in (LR_SCALE, EPOCHS)]
        for act in acts:  # where the run was steered: a multiplier or a re-planned length
            plt.vline(act.global_step / spe, color="magenta")
        scale = f" (x{s.lr_scale:g})" if s.lr_scale != 1.0 else ""
        marks = " [magenta]│ steered[/]" if acts else ""
        self.border_title = f"learning rate · now {ly[-1]:.3g}{scale}{marks}"


class LrFindPlot(PlotPane):
    """A learning-rate range test: smoothed loss against the LR on a log axis, the suggestion
    (valley) marked, with the other two rules and the run's own --lr for comparison."""

    DEFAULT_CSS = """
    LrFindPlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, state: RunState, *, id: str | None = None) -> None:
        super().__init__(state, max_fps=4.0, id=id)
        self.border_subtitle = "x: learning rate (log)"

    def data_key(self) -> tuple[Any, ...]:
        return (id(self.state.lr_found),)

    def has_data(self) -> bool:
        found = self.state.lr_found
        return found is not None and len(found.smoothed) > 1

    def draw(self, width: int, height: int) -> None:
        found = self.state.lr_found
        assert found is not None
        ys = found.smoothed
        xs = [math.log10(lr) for lr in found.lrs[: len(ys)]]
        best = min(ys)
        shown = [(x, min(y, 4 * best)) for x, y in zip(xs, ys, strict=True)]  # the cliff, clipped
        plt.plot([x for x, _ in shown], [y for _, y in shown], marker="braille", color="cyan")
        # (LR, plotext colour, rich colour, name): the suggestion drawn last, over the others.
        marks = [(found.lr, "gray", "gray", "--lr"), (found.minimum_tenth, "magenta", "magenta", "min/10"),
                 (found.steepest, "orange", "orange", "steepest"), (found.valley, "green", "green", "valley")]  # fmt: skip
        for lr, color, _, _ in marks:
            if lr is not None and lr > 0:
                plt.vline(math.log10(lr), color=color)
        ticks = list(range(math.floor(min(xs)), math.ceil(max(xs)) + 1))
        plt.xticks(ticks, [f"1e{t}" for t in ticks])
        legend = " ".join(f"[{c}]│ {name}[/]" for lr, _, c, name in marks if lr is not None)
        self.border_title = f"lr-find · smoothed loss · {legend}"
