"""The log pane: engine messages, warnings, and anything printed while the app runs."""

from __future__ import annotations

from textual.events import Print, Resize
from textual.widgets import RichLog


class LogPane(RichLog):
    """Engine messages, warnings, and anything printed while the app runs."""

    following = True
    """Whether the newest line is in view; kept over a resize (a shrink would otherwise leave
    older lines on screen), lost when the user scrolls up to read."""

    def on_print(self, event: Print) -> None:
        if event.text.strip():
            self.write(event.text.rstrip("\n"))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.following = new_value >= self.max_scroll_y

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        if self.following:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def is_current(self) -> bool:
        """Whether the newest line is in view (RichLog scrolls to it after the next refresh)."""
        return not self.following or self.scroll_offset.y >= self.max_scroll_y

    def waiting_for_size(self) -> bool:
        """Lines written before the pane knew its size wait to be drawn."""
        return bool(getattr(self, "_deferred_renders", None))
