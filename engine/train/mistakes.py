"""What an evaluation got wrong, kept for the mistakes gallery (engine/run/gallery.py).

During the evaluation, each batch's top three classes and probabilities stay on the device (no
read per batch: a read waits for the GPU); once it has ended they come to the CPU together, the
wrong ones are picked and the trainer writes the gallery's JSON and image sheet."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from engine.data.sources import DataBundle
from engine.run import events as ev
from engine.run.errors import first_line
from engine.run.fileio import atomic_write, atomic_write_json
from engine.run.gallery import COLUMNS, MAX_TILE_PX, MAX_TILES, gallery_files, pick
from engine.train.sheet import scaled, tile_sheet

if TYPE_CHECKING:
    from engine.train.loop_parts import LoopHost

TOP = 3
Row = tuple[int, int, list[tuple[int, float]]]
"""(test index, true class, [(class, probability), ...] most likely first)."""


class MistakeLog:
    """Collects one evaluation's predictions (``add`` per batch), then its mistakes (``rows``)."""

    def __init__(self) -> None:
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, index: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        probs, classes = logits.float().softmax(1).topk(min(TOP, logits.shape[1]), dim=1)
        self._parts.append((index, labels, classes, probs))

    def rows(self) -> list[Row]:
        """This process's mistakes (one read from the device)."""
        if not self._parts:
            return []
        index, labels, classes, probs = (torch.cat(t).cpu() for t in zip(*self._parts, strict=True))
        wrong = (classes[:, 0] != labels).nonzero().flatten().tolist()
        idx, lab, cls, pr = index.tolist(), labels.tolist(), classes.tolist(), probs.tolist()
        return [(idx[i], lab[i], [(c, round(p, 4)) for c, p in zip(cls[i], pr[i], strict=True)]) for i in wrong]


def write_gallery(run_dir: Path, rows: list[Row], images: torch.Tensor, class_names: list[str],
                  meta: dict[str, Any]) -> float:  # fmt: skip
    """Write the gallery of ``rows`` (every mistake of the evaluation) for the test split's
    ``images`` (uint8, N x 3 x H x W); the seconds it took. The sheet first, then the JSON that
    names it: a reader never sees a JSON whose tiles are not there yet."""
    began = time.perf_counter()
    kept = [rows[i] for i in pick(rows, MAX_TILES)]
    tiles = images[[r[0] for r in kept]] if kept else images[:0]
    size = int(images.shape[-1]) if images.ndim == 4 else MAX_TILE_PX
    tile_px = min(size, MAX_TILE_PX)
    columns = max(1, min(COLUMNS, len(kept)))
    sheet = tile_sheet(scaled(tiles, tile_px).permute(0, 2, 3, 1).numpy(), columns, tile_px)
    meta_path, sheet_path = gallery_files(run_dir)
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(sheet_path, lambda f: Image.fromarray(sheet).save(f, format="PNG", compress_level=1))
    entries = [{"index": i, "true": t, "top": [list(p) for p in top], "tile": k} for k, (i, t, top) in enumerate(kept)]
    atomic_write_json(meta_path, {**meta, "class_names": list(class_names), "tile_px": tile_px,
                                  "columns": columns, "total_wrong": len(rows), "mistakes": entries})  # fmt: skip
    return time.perf_counter() - began


class GalleryWriter:
    """Writes each evaluation's gallery in a thread of its own, so that training goes on at once
    (encoding the sheet and writing both files takes ~70 ms on a CPU: docs/benchmarks.md); one
    write at a time, the newest after the one before. ``wait`` before the run reports its end."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def keep(self, host: LoopHost, log: MistakeLog, data: DataBundle, accuracy: float) -> None:
        """The gallery of the evaluation just made: every rank's share of the mistakes (a
        collective: every rank calls it), written by rank 0. A failed write is said, never a
        reason to stop."""
        rows = log.rows()
        if host.world.is_distributed:
            rows = [row for share in host.world.gather(rows) for row in share]
        if not host.world.is_main:
            return
        s = host.state
        meta = {"epoch": s.epoch, "step": s.step, "global_step": s.global_step, "accuracy": accuracy}

        def write() -> None:
            try:
                write_gallery(host.run_dir, rows, data.test.images, data.class_names, meta)
            except OSError as exc:
                host.emit(ev.Log(f"mistakes gallery not written: {first_line(exc)}", level="warning"))

        self.wait()
        self._thread = threading.Thread(target=write, name="gallery-writer")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
