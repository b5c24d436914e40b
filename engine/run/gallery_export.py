"""``cifar-tui export RUN --mistakes FILE.png`` and ``--batch FILE.png``: the gallery's mistakes
(each image enlarged, its true class, the prediction and its probability under it) and a
training batch before and after augmentation, as labelled pictures."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from engine.run.fileio import atomic_write
from engine.run.gallery import BatchView, Gallery, Mistake, read_gallery

CELL_PX = 96
"""Each image is drawn at least this wide (a 32 px CIFAR image three times over)."""
CAPTION_PX = 26
COLUMNS = 10


class NoGallery(ValueError):
    """The run has no mistakes gallery to export."""


def labelled_grid(gallery: Gallery, mistakes: list[Mistake], columns: int = COLUMNS) -> Image.Image:
    """The images of ``mistakes``, ``columns`` wide, each with two caption lines: true -> predicted
    and probability, then the top-3."""
    sheet = Image.open(gallery.sheet).convert("RGB")
    side = max(CELL_PX, gallery.tile_px)
    columns = max(1, min(columns, len(mistakes)))
    rows = max(1, -(-len(mistakes) // columns))
    grid = Image.new("RGB", (columns * side, rows * (side + CAPTION_PX)), "white")
    draw = ImageDraw.Draw(grid)
    for k, mistake in enumerate(mistakes):
        r, c = divmod(k, columns)
        x, y = c * side, r * (side + CAPTION_PX)
        tile = sheet.crop(gallery.tile_box(mistake)).resize((side, side), Image.Resampling.NEAREST)
        grid.paste(tile, (x, y))
        truth = f"{gallery.name(mistake.true)} -> {gallery.name(mistake.predicted)}"
        draw.text((x + 2, y + side + 1), truth[:18], fill="black")
        draw.text((x + 2, y + side + 13), f"{mistake.confidence:.0%} sure", fill="firebrick")
    return grid


def export_mistakes(run_dir: Path, out: Path) -> Path:
    """Write the run's most confident mistakes as a labelled PNG at ``out`` (atomically: an
    earlier file is replaced whole or kept)."""
    gallery = read_gallery(run_dir)
    if gallery is None:
        raise NoGallery(f"{run_dir} has no mistakes gallery yet (it is written after each evaluation)")
    if not gallery.mistakes:
        raise NoGallery(f"{run_dir}: the latest evaluation got every test image right; no mistakes to show")
    grid = labelled_grid(gallery, gallery.most_confident())
    atomic_write(out, lambda f: grid.save(f, format="PNG"))
    return out


def batch_grid(view: BatchView, columns: int = 4) -> Image.Image:
    """The batch view's pairs (before, after augmentation), ``columns`` pairs wide, each labelled."""
    sheet = Image.open(view.sheet).convert("RGB")
    side = max(CELL_PX, view.tile_px)
    count = len(view.labels)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    pair_w = 2 * side + 8
    grid = Image.new("RGB", (columns * pair_w, rows * (side + CAPTION_PX)), "white")
    draw = ImageDraw.Draw(grid)
    for k in range(count):
        r, c = divmod(k, columns)
        x, y = c * pair_w, r * (side + CAPTION_PX)
        for j, box in enumerate(view.boxes(k)):
            grid.paste(sheet.crop(box).resize((side, side), Image.Resampling.NEAREST), (x + j * side, y))
        draw.text((x + 2, y + side + 1), f"{view.name(k)}: before | after", fill="black")
    return grid
