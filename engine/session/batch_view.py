"""``python -m engine.session.batch_view RUN_DIR [--epoch E --step S]``: what the model sees, the
first images of a training batch before and after augmentation (crop, flip, cutout), for the
dashboard (which never imports torch), the browser view and ``export --batch``.

Every draw of the augmentation comes from the run's seed and the epoch (engine/data/pipeline.py),
so this process rebuilds the very batch the trainer took, without asking it anything and at no
cost to training: by default the one after its latest progress report. Writes
``gallery/batch.png`` (two tiles per image: before, after) and ``gallery/batch.json``; prints
the JSON's path; a refusal is one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from engine.run.errors import UserError, first_line, one_line_command
from engine.run.gallery import BATCH_IMAGES, BATCH_JSON, BATCH_SHEET, GALLERY, MAX_TILE_PX
from engine.run.heavy_imports import heavy_imports

if TYPE_CHECKING:
    from engine.data.pipeline import BatchSource


def where_training_is(run_dir: Path) -> tuple[int, int]:
    """(epoch, step) of the batch after the run's latest progress report (of its last batch, once
    it has trained its epochs); (0, 0) before any."""
    from engine.run import events as ev
    from engine.run.rundir import EVENTS, read_events

    if not (run_dir / EVENTS).is_file():
        raise UserError(f"{run_dir} is not a run directory (no {EVENTS})")
    last = next((e for e in reversed(read_events(run_dir)) if isinstance(e, ev.Progress)), None)
    if last is None:
        return 0, 0
    if last.step < last.steps_per_epoch:
        return last.epoch, last.step
    return (last.epoch + 1, 0) if last.epoch + 1 < last.epochs else (last.epoch, last.steps_per_epoch - 1)


def batch_images(train: BatchSource, epoch: int, step: int) -> list[int]:
    """The training images of the epoch's batch ``step``, in batch order (one process's view)."""
    from engine.data.pipeline import LoaderBatches, TensorBatches

    if isinstance(train, LoaderBatches):
        return train.batch_indices(epoch, step)[0]
    assert isinstance(train, TensorBatches)
    lo = step * train.batch_size
    return train.epoch_plan(epoch).order[lo : lo + train.batch_size].tolist()


def write_batch_view(run_dir: Path, epoch: int | None = None, step: int | None = None) -> Path:
    import json

    with heavy_imports():
        import torch
        from PIL import Image

        from engine.data.sources import load_data
        from engine.ranks.group import World
        from engine.run.config import TrainConfig
        from engine.run.fileio import atomic_write, atomic_write_json
        from engine.train.setup import batch_sources
        from engine.train.sheet import scaled, tile_sheet

    if epoch is None or step is None:
        epoch, step = where_training_is(run_dir)
    try:
        cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {run_dir / 'config.json'}: {first_line(exc)}") from exc
    cfg = cfg.with_overrides(device="cpu", workers=0)  # the same draws in this process, off the GPU
    data = load_data(cfg, lambda _kind, _text: None)
    train, _test = batch_sources(cfg, data, torch.device("cpu"), World(), compiled=False)
    step = min(step, train.steps_per_epoch - 1)
    x, y = next(iter(train.batches(epoch, start_step=step)))
    chosen = batch_images(train, epoch, step)[:BATCH_IMAGES]
    before = data.train.images[chosen]
    after = (x[: len(chosen)].float() * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    if after.shape[1] != 3 or after.shape[-1] != before.shape[-1]:
        raise UserError("this run's batches are not images of the data set's size; no batch view")
    tile_px = min(int(before.shape[-1]), MAX_TILE_PX)
    pairs = torch.stack([before, after.contiguous()], 1).flatten(0, 1)  # before, after, before, ...
    sheet = tile_sheet(scaled(pairs, tile_px).permute(0, 2, 3, 1).numpy(), 2, tile_px)
    folder = run_dir / GALLERY
    folder.mkdir(exist_ok=True)
    atomic_write(folder / BATCH_SHEET, lambda f: Image.fromarray(sheet).save(f, format="PNG"))
    atomic_write_json(folder / BATCH_JSON, {"epoch": epoch, "step": step, "loader": train.name, "tile_px": tile_px,
                                            "labels": y[: len(chosen)].tolist(),
                                            "class_names": list(data.class_names)})  # fmt: skip
    return folder / BATCH_JSON


def export_batch(run_dir: Path, out: Path) -> Path:
    """``export --batch``: the batch training is at (its last, for a finished run) before and
    after augmentation as a labelled PNG at ``out`` (atomically)."""
    from engine.run.fileio import atomic_write
    from engine.run.gallery import read_batch_view
    from engine.run.gallery_export import NoGallery, batch_grid

    write_batch_view(run_dir)
    view = read_batch_view(run_dir)
    if view is None:
        raise NoGallery(f"{run_dir}: the batch view could not be read back")
    grid = batch_grid(view)
    atomic_write(out, lambda f: grid.save(f, format="PNG"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.session.batch_view", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--epoch", type=int, help="0-based (default: where training is)")
    p.add_argument("--step", type=int, help="the batch in that epoch, 0-based")
    args = p.parse_args(argv)
    return one_line_command(
        lambda: write_batch_view(args.run_dir, args.epoch, args.step), "cannot write the batch view"
    )


if __name__ == "__main__":
    sys.exit(main())
