"""What the model sees: the first images of a training batch before and after augmentation,
side by side with their labels; r takes the batch training is at now. The pictures come from a
process of its own (engine/session/batch_view.py), as this process never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.events import Resize
from textual.screen import ModalScreen
from textual.widgets import Label

from engine.run.gallery import BatchView, read_batch_view
from tui.widgets.images import image_widget

PAIR_W = 36
"""A pair's cells: two 16-cell pictures and the gap between them."""


class Pair(Vertical):
    """One image of the batch: before and after augmentation, and its label."""

    def __init__(self, view: BatchView, sheet: PILImage.Image, k: int) -> None:
        super().__init__(classes="pair")
        self.view, self.sheet, self.k = view, sheet, k

    def compose(self) -> ComposeResult:
        before, after = self.view.boxes(self.k)
        with Horizontal(classes="pictures"):
            yield image_widget()(self.sheet.crop(before), classes="picture")
            yield image_widget()(self.sheet.crop(after), classes="picture")
        yield Label(self.view.name(self.k), classes="caption")


class BatchScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,b", "dismiss", "Close"), Binding("r", "refresh", "Again, now")]

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir else None
        self.loading = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("what the model sees: rebuilding the training batch from the run's seed…", id="title")
            with VerticalScroll(id="tiles"):
                yield Grid(id="grid")
            yield Label("each pair: before · after augmentation · r: the batch now · esc: close",
                        classes="hint")  # fmt: skip

    def on_mount(self) -> None:
        self._fit(self.app.size.width)
        self.action_refresh()

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        self.query_one("#grid", Grid).styles.grid_size_columns = max(1, (width - 4) // PAIR_W)

    def action_refresh(self) -> None:
        if self.run_dir is None:
            self.query_one("#title", Label).update("what the model sees: no run yet")
            return
        if self.loading:
            return
        self.loading = True
        self.run_worker(self._compute, thread=True, exclusive=True)

    def _compute(self) -> None:
        command = [sys.executable, "-m", "engine.session.batch_view", str(self.run_dir)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        self.app.call_from_thread(self._computed, done.returncode, done.stderr.strip().splitlines())

    def _computed(self, code: int, err: list[str]) -> None:
        self.loading = False
        view = read_batch_view(self.run_dir) if code == 0 and self.run_dir else None
        title = self.query_one("#title", Label)
        if view is None:
            title.update(f"what the model sees: not shown ({err[-1] if err else f'exit {code}'})")
            return
        sheet = PILImage.open(view.sheet).convert("RGB")
        grid = self.query_one("#grid", Grid)
        grid.remove_children()
        grid.mount_all(Pair(view, sheet, k) for k in range(len(view.labels)))
        title.update(f"what the model sees: batch {view.step + 1} of epoch {view.epoch + 1} ({view.loader} loader), "
                     f"the first {len(view.labels)} images")  # fmt: skip
