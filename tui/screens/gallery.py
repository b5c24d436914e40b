"""The mistakes gallery: the test images of one confusion cell (or the most confident mistakes
of all classes) as pictures, each with the model's top three; Enter shows one large, the
arrows step through them, and a shows where the model looked. Reads the files the trainer
wrote (engine/run/gallery.py); the activation maps come from a process of their own
(engine/session/cam.py), as this process never imports torch."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image as PILImage
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.events import Click, Resize
from textual.screen import ModalScreen
from textual.widgets import Label

from engine.run.gallery import MAX_CAMS, Cams, Gallery, Mistake, read_cams
from tui.widgets.images import image_widget

TILE_W = 18  # a tile's cells across, with its label (its height is in app.tcss)
"""A tile's cells: the picture (8 rows of half cells: 16 px tall) and its caption."""


def crop(gallery: Gallery, sheet: PILImage.Image, mistake: Mistake) -> PILImage.Image:
    return sheet.crop(gallery.tile_box(mistake))


class Tile(Vertical, can_focus=True):
    """One mistake: its picture and a caption (true -> predicted, probability)."""

    def __init__(self, gallery: Gallery, sheet: PILImage.Image, mistake: Mistake, place: int) -> None:
        super().__init__(classes="tile")
        self.gallery, self.sheet, self.mistake, self.place = gallery, sheet, mistake, place

    def compose(self) -> ComposeResult:
        yield image_widget()(crop(self.gallery, self.sheet, self.mistake), classes="picture")
        g, m = self.gallery, self.mistake
        yield Label(f"{g.name(m.true)}\n-> {g.name(m.predicted)}\n{m.confidence:.0%} sure", classes="caption")

    def on_click(self, _event: Click) -> None:
        self.focus()


class GalleryScreen(ModalScreen[None]):
    """A grid of mistakes; arrows move, Enter opens one large."""

    BINDINGS = [
        Binding("escape,q,g", "dismiss", "Close"),
        Binding("left", "move(-1)", "Previous", show=False),
        Binding("right", "move(1)", "Next", show=False),
        Binding("up", "move_row(-1)", "Up", show=False),
        Binding("down", "move_row(1)", "Down", show=False),
        Binding("enter,v", "view", "Large"),
    ]

    def __init__(self, gallery: Gallery, mistakes: list[Mistake], title: str) -> None:
        super().__init__()
        self.gallery, self.mistakes, self.title_text = gallery, mistakes, title
        self.sheet = PILImage.open(gallery.sheet).convert("RGB")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            with VerticalScroll(id="tiles"), Grid(id="grid"):
                for place, mistake in enumerate(self.mistakes):
                    yield Tile(self.gallery, self.sheet, mistake, place)
            yield Label("arrows: move · enter: large · esc: close", classes="hint")

    def on_mount(self) -> None:
        self._fit(self.app.size.width)
        tiles = list(self.query(Tile))
        if tiles:
            tiles[0].focus()

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        self.columns = max(1, (width - 8) // TILE_W)
        self.query_one("#grid", Grid).styles.grid_size_columns = self.columns

    def _focused(self) -> int:
        focused = self.focused
        return focused.place if isinstance(focused, Tile) else 0

    def _go(self, place: int) -> None:
        tiles = list(self.query(Tile))
        if tiles:
            tiles[max(0, min(len(tiles) - 1, place))].focus()

    def action_move(self, by: int) -> None:
        self._go(self._focused() + by)

    def action_move_row(self, by: int) -> None:
        self._go(self._focused() + by * self.columns)

    def action_view(self) -> None:
        if self.mistakes:
            self.app.push_screen(MistakeScreen(self.gallery, self.sheet, self.mistakes, self._focused()))

    @on(Click, "Tile")
    def _open(self, event: Click) -> None:
        if event.chain == 2:  # a double click opens it large
            self.action_view()


class MistakeScreen(ModalScreen[None]):
    """One mistake, as large as the screen allows, with its top three; arrows step through; a
    shows where the model looked (Grad-CAM for its prediction and for the truth)."""

    BINDINGS = [
        Binding("escape,q,enter", "dismiss", "Back"),
        Binding("left,up", "step(-1)", "Previous"),
        Binding("right,down,space", "step(1)", "Next"),
        Binding("a", "looked", "Where it looked"),
    ]

    def __init__(self, gallery: Gallery, sheet: PILImage.Image, mistakes: list[Mistake], place: int) -> None:
        super().__init__()
        self.gallery, self.sheet, self.mistakes, self.place = gallery, sheet, mistakes, place
        self.run_dir = gallery.sheet.parent.parent
        self.cams: Cams | None = None
        self.cam_sheet: PILImage.Image | None = None
        self.computing = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("", id="which")
            with Horizontal(id="pictures"):
                yield image_widget()(None, id="large")
                yield image_widget()(None, id="cam-predicted", classes="cam")
                yield image_widget()(None, id="cam-true", classes="cam")
            yield Label("", id="top")
            yield Label("", id="looked")
            yield Label("left / right: previous / next · a: where it looked · esc: back", classes="hint")

    def on_mount(self) -> None:
        self._show()

    def on_resize(self, _event: Resize) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """Square pictures as large as fit side by side: a cell is one pixel wide and two tall."""
        shown = [w for w in self.query_one("#pictures").children if w.display]
        area = self.query_one("#pictures").size
        cols = max(4, min((area.width - 2 * len(shown)) // max(1, len(shown)), 2 * area.height))
        for widget in shown:
            widget.styles.width, widget.styles.height = cols, cols // 2

    def _show(self) -> None:
        mistake = self.mistakes[self.place]
        g = self.gallery
        self.query_one("#large").image = crop(g, self.sheet, mistake)  # type: ignore[attr-defined]
        self.query_one("#which", Label).update(
            f"{self.place + 1} of {len(self.mistakes)} · test image {mistake.index} · "
            f"a {g.name(mistake.true)}, taken for a {g.name(mistake.predicted)}"
        )
        self.query_one("#top", Label).update(f"top 3: {g.top_line(mistake)}")
        boxes = self.cams.boxes(mistake.index) if self.cams and self.cam_sheet else None
        for widget_id, box in zip(("#cam-predicted", "#cam-true"), boxes or (None, None), strict=True):
            picture = self.query_one(widget_id)
            picture.image = self.cam_sheet.crop(box) if box and self.cam_sheet else None  # type: ignore[attr-defined]
            picture.display = box is not None
        self.call_after_refresh(self._fit)
        looked = self.query_one("#looked", Label)
        if boxes and self.cams:
            looked.update(f"where it looked (Grad-CAM at {self.cams.layer}, step {self.cams.global_step:,}): "
                          f"middle: {g.name(mistake.predicted)} · right: {g.name(mistake.true)}")  # fmt: skip
        elif not self.computing:
            looked.update("")

    def action_step(self, by: int) -> None:
        self.place = (self.place + by) % len(self.mistakes)
        self._show()

    def action_looked(self) -> None:
        """Compute the maps of this image and those after it, in a process of its own (torch)."""
        if self.computing:
            return
        self.computing = True
        indices = [m.index for m in (self.mistakes[self.place :] + self.mistakes[: self.place])][:MAX_CAMS]
        self.query_one("#looked", Label).update("where it looked: computing Grad-CAM from the latest checkpoint…")
        self.run_worker(lambda: self._compute(indices), thread=True, exclusive=True)

    def _compute(self, indices: list[int]) -> None:
        command = [sys.executable, "-m", "engine.session.cam", str(self.run_dir), *map(str, indices)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        self.app.call_from_thread(self._computed, done.returncode, done.stderr.strip().splitlines())

    def _computed(self, code: int, err: list[str]) -> None:
        self.computing = False
        cams = read_cams(self.run_dir) if code == 0 else None
        if cams is None:
            why = err[-1] if err else f"exit {code}"
            self.query_one("#looked", Label).update(f"where it looked: not computed ({why})")
            return
        self.cams, self.cam_sheet = cams, PILImage.open(cams.sheet).convert("RGB")
        self._show()


def cell_title(gallery: Gallery, true: int, predicted: int, shown: int) -> str:
    """``cat taken for dog: 12 images (the evaluation at step 1,170)``."""
    return (
        f"{gallery.name(true)} taken for {gallery.name(predicted)}: {shown} image{'s' * (shown != 1)} "
        f"(the evaluation at step {gallery.global_step:,})"
    )


def confident_title(gallery: Gallery) -> str:
    kept = len(gallery.mistakes)
    more = f" of {gallery.total_wrong}" if gallery.total_wrong > kept else ""
    return (
        f"most confident mistakes: {kept}{more} (the evaluation at step {gallery.global_step:,}, "
        f"accuracy {gallery.accuracy:.1%})"
    )
