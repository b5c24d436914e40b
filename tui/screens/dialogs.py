"""Questions the dashboard asks: quit, stop, go offline."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class Choice(ModalScreen[str]):
    """A question with buttons; dismisses with the chosen button's id (escape: 'cancel'). The key
    that asked the question, pressed again, gives ``again``: q q quits as Ctrl-C Ctrl-C does."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel")]

    def __init__(
        self, question: str, choices: list[tuple[str, str, str]], again: tuple[str, str] | None = None
    ) -> None:
        super().__init__()
        self.question = question
        self.choices = choices  # (id, label, variant)
        if again is not None:
            key, choice = again
            self._bindings.bind(key, f"dismiss({choice!r})", show=False)

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
        again=("q", "save"),
    )


def stop_dialog() -> Choice:
    return Choice(
        "Stop training?",
        [
            ("save", "Save and stop", "primary"),
            ("nosave", "Stop without saving", "error"),
            ("cancel", "Cancel", "default"),
        ],
    )


def offline_dialog(what: str) -> Choice:
    return Choice(
        f"Download failed (no network?).\nStart now with {what} instead?",
        [("offline", "Start offline", "primary"), ("cancel", "Stay here", "default")],
    )
