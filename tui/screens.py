"""Modal screens: quit confirmation, confusion matrix, help, offline fallback."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from engine.run.events import Evaluation
from tui.keys import help_text
from tui.widgets.classes import confusion_table


class Choice(ModalScreen[str]):
    """A question with buttons; dismisses with the chosen button's id (escape: 'cancel')."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices  # (id, label, variant)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                for ident, label, variant in self.choices:
                    yield Button(label, id=ident, variant=variant)  # type: ignore[arg-type]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")


def quit_dialog(waiting_for_room: bool = False) -> Choice:
    if waiting_for_room:  # the run has ended: its final checkpoint waits for the disk to have room
        return Choice(
            "The final checkpoint is waiting for disk room. Quit?",
            [("cancel", "Keep waiting", "primary"), ("nosave", "Give it up and quit", "error")],
        )
    return Choice(
        "Training is running. Quit?",
        [
            ("save", "Save and quit", "primary"),
            ("nosave", "Quit without saving", "error"),
            ("cancel", "Cancel", "default"),
        ],
    )


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


HELP = help_text()


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("question_mark,escape,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # The close hint comes first so that it shows on the smallest terminal; the keys scroll.
            yield Label("? / esc: close · arrows scroll", classes="hint top")
            with VerticalScroll(id="help-body"):
                yield Static(HELP)
