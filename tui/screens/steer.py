"""The steering dialog: change the LR multiplier, the run's length and its stop rules while it
trains. Each field starts at the run's current value; only what the user changed is sent, and a
value that does not read is said under the fields (the dialog stays open)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from engine.run import steering as st

HINTS = {
    st.LR_SCALE: "0.5 sets it · *2 or /2 changes it",
    st.EPOCHS: "30 · +5 · -2 (at least the current one)",
    st.EARLY_STOP: "patience=3[,min-delta=0.5] · off",
    st.TARGET: "93 · 93% · off",
}


class SteerDialog(ModalScreen[list[st.SteerAct]]):
    """Dismisses with the acts to send (empty: nothing changed, or cancelled)."""

    BINDINGS = [Binding("escape", "dismiss([])", "Cancel")]

    def __init__(self, current: dict[str, str], source: str, ready: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.current = current
        self.source = source
        self.ready = ready
        """Called once the first field has the focus: keys typed ahead can be played into it."""

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Steer the run (applied at the next batch, kept in its checkpoints)", id="question")
            for what in st.WHATS:
                with Horizontal(classes="field"):
                    yield Label(st.NAMES[what], classes="name")
                    yield Input(self.current[what], id=f"steer-{what}", select_on_focus=True)
                    yield Label(HINTS[what], classes="hint")
            yield Label("", id="steer-error")
            with Horizontal(id="buttons"):
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(f"#steer-{st.LR_SCALE}", Input).focus()  # its value selected: typing replaces it
        self.ready()

    def acts(self) -> list[st.SteerAct]:
        """The changed fields as acts; ValueError (one line) for the first that does not read."""
        acts = []
        for what in st.WHATS:
            text = self.query_one(f"#steer-{what}", Input).value.strip()
            if text != self.current[what]:
                acts.append(st.PARSERS[what](text, self.source))
        return acts

    def _apply(self) -> None:
        try:
            acts = self.acts()
        except ValueError as exc:
            self.query_one("#steer-error", Label).update(str(exc))
            return
        self.dismiss(acts)

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss([])
