"""The confusion matrix of the latest evaluation, over the dashboard."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from engine.run.events import Evaluation
from tui.widgets.classes import confusion_table


class ConfusionScreen(ModalScreen[None]):
    BINDINGS = [Binding("c,escape,q", "dismiss", "Close")]

    def __init__(self, evaluation: Evaluation | None) -> None:
        super().__init__()
        self.evaluation = evaluation

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(confusion_table(self.evaluation))
            yield Label("c / esc: close", classes="hint")

    def on_mount(self) -> None:
        # Auto width collapses inside a scroll view: size the dialog for the widest line (+ border, padding).
        widest = max(len(line) for line in confusion_table(self.evaluation).plain.splitlines())
        self.query_one("#dialog").styles.width = min(self.app.size.width - 2, widest + 8)
