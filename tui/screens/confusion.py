"""The confusion matrix of the latest evaluation, over the dashboard: arrows (or the mouse) move
over its cells, Enter opens the images of that cell, m the most confident mistakes of all."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from engine.run.events import Evaluation
from engine.run.gallery import Gallery, read_gallery
from tui.screens.gallery import GalleryScreen, cell_title, confident_title
from tui.widgets.classes import confusion_table

HINT = "arrows: move · enter: the images · m: most confident mistakes · c: close"


def cell_style(count: int, total: int, diagonal: bool) -> str:
    share = count / max(1, total)
    return "bold green" if diagonal else ("bold red" if share >= 0.2 else "red" if share >= 0.05 else "dim")


class ConfusionScreen(ModalScreen[None]):
    BINDINGS = [Binding("c,escape,q", "dismiss", "Close"), Binding("m", "confident", "Most confident mistakes")]

    def __init__(self, evaluation: Evaluation | None, run_dir: str = "") -> None:
        super().__init__()
        self.evaluation, self.run_dir = evaluation, run_dir

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            if self.evaluation is None:
                yield Static(confusion_table(None))
            else:
                yield Label("confusion matrix (rows: true class, columns: predicted)", classes="heading")
                yield DataTable(cursor_type="cell", zebra_stripes=False, cell_padding=0, id="matrix")
            yield Label(HINT if self.evaluation else "c / esc: close", classes="hint")

    def on_mount(self) -> None:
        if self.evaluation is None:
            return
        names, confusion = self.evaluation.class_names, self.evaluation.confusion
        table = self.query_one("#matrix", DataTable)
        width = max(6, *(len(str(c)) + 2 for row in confusion for c in row))
        table.add_column(Text("true \\ pred ", style="dim"), key="true")
        for name in names:
            table.add_column(Text(name[: width - 1], style="dim", justify="right"), width=width)
        for i, (name, row) in enumerate(zip(names, confusion, strict=False)):
            total = sum(row)
            cells = [Text(str(c), style=cell_style(c, total, i == j), justify="right") for j, c in enumerate(row)]
            table.add_row(Text(name + " "), *cells)
        table.move_cursor(row=0, column=1)
        table.focus()
        label = max(11, *(len(n) for n in names)) + 2
        self.query_one("#dialog").styles.width = min(self.app.size.width - 2, label + len(names) * width + 8)

    def _gallery(self) -> Gallery | None:
        gallery = read_gallery(Path(self.run_dir)) if self.run_dir else None
        if gallery is None:
            self.notify("no mistakes gallery yet: it is written after each evaluation", severity="warning")
        return gallery

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        true, predicted = event.coordinate.row, event.coordinate.column - 1
        if predicted < 0:
            return
        if true == predicted:
            self.notify("right answers: pick a cell off the diagonal to see mistakes")
            return
        gallery = self._gallery()
        if gallery is None:
            return
        mistakes = gallery.cell(true, predicted)
        if not mistakes:
            self.notify(f"no {gallery.name(true)} taken for {gallery.name(predicted)} in the latest gallery")
            return
        self.app.push_screen(GalleryScreen(gallery, mistakes, cell_title(gallery, true, predicted, len(mistakes))))

    def action_confident(self) -> None:
        gallery = self._gallery()
        if gallery is not None and gallery.mistakes:
            self.app.push_screen(GalleryScreen(gallery, gallery.most_confident(), confident_title(gallery)))
