"""The mistakes gallery's files in a run directory, and reading them (torch-free: the dashboard,
an attached one, the browser view and ``export`` all read what the trainer wrote).

After each evaluation the trainer writes ``gallery/mistakes.json`` and ``gallery/mistakes.png``:
the test images the model got wrong (at most :data:`MAX_TILES`, every cell of the confusion
matrix represented before any gets more), each with its true class and the model's top three
classes and probabilities. The PNG is a sheet of tiles, one per entry, in the JSON's order,
``columns`` wide; a tile is the test image as the model saw it before normalisation (scaled
down to :data:`MAX_TILE_PX` where larger)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GALLERY = "gallery"
MISTAKES_JSON = "mistakes.json"
MISTAKES_SHEET = "mistakes.png"
MAX_TILES = 400
"""Images kept per evaluation: a few hundred, so the files stay small (a 32 px sheet ~1 MB)."""
MAX_TILE_PX = 64
COLUMNS = 20
BATCH_JSON = "batch.json"
BATCH_SHEET = "batch.png"
BATCH_IMAGES = 32
"""Images of a training batch the batch view shows (engine/session/batch_view.py)."""
CAM_JSON = "cam.json"
CAM_SHEET = "cam.png"
MAX_CAMS = 64
"""Images whose activation maps one request computes (engine/session/cam.py)."""


@dataclass(frozen=True)
class Mistake:
    """One test image the model got wrong."""

    index: int
    """Its place in the run's test split."""
    true: int
    top: list[tuple[int, float]]
    """The model's top classes with their probabilities, most likely first (top[0] is the prediction)."""
    tile: int
    """Its tile in the sheet."""

    @property
    def predicted(self) -> int:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]


@dataclass(frozen=True)
class Gallery:
    """The latest evaluation's mistakes, as the trainer wrote them."""

    epoch: int
    global_step: int
    accuracy: float
    class_names: list[str]
    tile_px: int
    columns: int
    mistakes: list[Mistake]
    total_wrong: int
    """Mistakes in the whole evaluation (the gallery keeps at most MAX_TILES of them)."""
    sheet: Path

    def cell(self, true: int, predicted: int) -> list[Mistake]:
        """The images of class ``true`` taken for ``predicted``, most confident first."""
        picked = [m for m in self.mistakes if m.true == true and m.predicted == predicted]
        return sorted(picked, key=lambda m: -m.confidence)

    def most_confident(self) -> list[Mistake]:
        """Every kept mistake, the most confident first."""
        return sorted(self.mistakes, key=lambda m: -m.confidence)

    def tile_box(self, mistake: Mistake) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a mistake's tile in the sheet, in pixels."""
        row, col = divmod(mistake.tile, self.columns)
        x, y = col * self.tile_px, row * self.tile_px
        return x, y, x + self.tile_px, y + self.tile_px

    def label(self, mistake: Mistake) -> str:
        """``cat -> dog 91%`` (its true class, the prediction and its probability)."""
        return f"{self.name(mistake.true)} -> {self.name(mistake.predicted)} {mistake.confidence:.0%}"

    def top_line(self, mistake: Mistake) -> str:
        """``dog 91% · cat 6% · frog 1%``."""
        return " · ".join(f"{self.name(c)} {p:.0%}" for c, p in mistake.top)

    def name(self, cls: int) -> str:
        return self.class_names[cls] if 0 <= cls < len(self.class_names) else str(cls)


def gallery_files(run_dir: Path) -> tuple[Path, Path]:
    folder = Path(run_dir) / GALLERY
    return folder / MISTAKES_JSON, folder / MISTAKES_SHEET


def read_gallery(run_dir: Path) -> Gallery | None:
    """The run's latest mistakes gallery; None when it has none (no evaluation yet, an earlier
    release, or damaged files: the gallery is a view, never a reason to fail)."""
    meta, sheet = gallery_files(run_dir)
    try:
        data = json.loads(meta.read_text())
        return _from_dict(data, sheet) if sheet.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _from_dict(data: dict[str, Any], sheet: Path) -> Gallery:
    mistakes = [
        Mistake(int(m["index"]), int(m["true"]), [(int(c), float(p)) for c, p in m["top"]], int(m["tile"]))
        for m in data["mistakes"]
    ]
    return Gallery(
        epoch=int(data["epoch"]), global_step=int(data["global_step"]), accuracy=float(data["accuracy"]),
        class_names=[str(n) for n in data["class_names"]], tile_px=int(data["tile_px"]),
        columns=int(data["columns"]), mistakes=mistakes, total_wrong=int(data["total_wrong"]), sheet=sheet,
    )  # fmt: skip


def pick(rows: list[tuple[int, int, list[tuple[int, float]]]], limit: int = MAX_TILES) -> list[int]:
    """Which of ``rows`` (index, true, top) a gallery keeps: each confusion cell's most confident
    mistake first, then each cell's second, and so on, up to ``limit``; their positions in ``rows``."""
    by_cell: dict[tuple[int, int], list[int]] = {}
    for i, (_index, true, top) in enumerate(rows):
        by_cell.setdefault((true, top[0][0]), []).append(i)
    ranked: list[tuple[int, float, int]] = []
    for members in by_cell.values():
        members.sort(key=lambda i: -rows[i][2][0][1])
        ranked.extend((rank, -rows[i][2][0][1], i) for rank, i in enumerate(members))
    ranked.sort()
    return [i for _rank, _conf, i in ranked[:limit]]


@dataclass(frozen=True)
class Cams:
    """Where the model looked, for some test images: Grad-CAM of the predicted and of the true
    class, from the checkpoint at ``global_step`` (engine/session/cam.py wrote them)."""

    global_step: int
    layer: str
    tile_px: int
    rows: dict[int, int]
    """Test index -> its row in the sheet (the predicted class's map left, the true class's right)."""
    sheet: Path

    def boxes(self, index: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None:
        """The sheet boxes of an image's two maps (predicted, true); None when not computed."""
        row = self.rows.get(index)
        if row is None:
            return None
        t, y = self.tile_px, row * self.tile_px
        return (0, y, t, y + t), (t, y, 2 * t, y + t)


def read_cams(run_dir: Path) -> Cams | None:
    """The run's latest activation maps; None when there are none or they are damaged."""
    folder = Path(run_dir) / GALLERY
    try:
        data = json.loads((folder / CAM_JSON).read_text())
        rows = {int(i): int(v["row"]) for i, v in data["images"].items()}
        cams = Cams(int(data["global_step"]), str(data["layer"]), int(data["tile_px"]), rows, folder / CAM_SHEET)
        return cams if cams.sheet.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class BatchView:
    """What the model sees: the first images of a training batch before and after augmentation,
    as engine/session/batch_view.py rebuilt them from the run's seed."""

    epoch: int
    step: int
    loader: str
    labels: list[int]
    class_names: list[str]
    tile_px: int
    sheet: Path

    def boxes(self, k: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """The sheet boxes of image ``k`` before and after augmentation."""
        t, y = self.tile_px, k * self.tile_px
        return (0, y, t, y + t), (t, y, 2 * t, y + t)

    def name(self, k: int) -> str:
        cls = self.labels[k]
        return self.class_names[cls] if 0 <= cls < len(self.class_names) else str(cls)


def read_batch_view(run_dir: Path) -> BatchView | None:
    """The run's latest batch view; None when there is none or it is damaged."""
    folder = Path(run_dir) / GALLERY
    try:
        d = json.loads((folder / BATCH_JSON).read_text())
        view = BatchView(int(d["epoch"]), int(d["step"]), str(d["loader"]), [int(c) for c in d["labels"]],
                         [str(n) for n in d["class_names"]], int(d["tile_px"]), folder / BATCH_SHEET)  # fmt: skip
        return view if view.sheet.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
