"""The learning-rate finder's answer (``--lr-find`` on the dashboard): the range test's plot
with its suggestion, and the choice to train at it (a multiplier on --lr, from the first step)
or at --lr as given. The run waits, paused, until one is chosen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from tui.state import RunState
from tui.widgets.plots import LrFindPlot


class LrFindScreen(ModalScreen[str]):
    """Dismisses with ``use`` (train at the suggestion) or ``keep`` (escape: keep --lr)."""

    BINDINGS = [Binding("escape", "dismiss('keep')", "Keep --lr")]

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        found = self.state.lr_found
        assert found is not None and found.valley is not None
        with Vertical(id="dialog", classes="lr-find"):
            yield LrFindPlot(self.state, id="lr-find-plot")
            yield Label(f"suggested {found.valley:.2e} (valley) · steepest {found.steepest:.2e} · min/10 "
                        f"{found.minimum_tenth:.2e} · {len(found.lrs)} steps, {found.seconds:.1f} s\n"
                        f"Train at {found.valley:.2e} (x{found.valley / found.lr:.3g} on --lr) from the first step, "
                        f"or at --lr {found.lr:.2e} as given?", id="question")  # fmt: skip
            with Horizontal(id="buttons"):
                yield Button(f"Use {found.valley:.2e}", id="use", variant="primary")
                yield Button(f"Keep {found.lr:.2e}", id="keep")

    def on_mount(self) -> None:
        self.set_interval(0.25, self._redraw)
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        self.query_one(LrFindPlot).maybe_redraw()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "keep")
