"""The help screen: the key map (``tui/keys.py``) and how the dashboard draws."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.keys import help_text

HELP = help_text()


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("question_mark,escape,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            # The close hint comes first so that it shows on the smallest terminal; the keys scroll.
            yield Label("? / esc: close · arrows scroll", classes="hint top")
            with VerticalScroll(id="help-body"):
                yield Static(HELP)
