"""``python -m engine.session.cam RUN_DIR INDEX...``: where the model looked at some of its
mistakes, for the dashboard (which never imports torch) and for a finished run.

Loads the run's latest checkpoint and test split, computes Grad-CAM (engine/train/cam.py) for
the predicted and for the true class of each test image named by INDEX (its place in the test
split, as in the gallery), on the CPU so that a training on the GPU is not disturbed, and writes
``gallery/cam.png`` (two tiles per image: the predicted class's map, then the true class's)
and ``gallery/cam.json`` (engine/run/gallery.py reads them). Prints the JSON's path; a refusal
is one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.run.errors import UserError, one_line_command
from engine.run.gallery import CAM_JSON, CAM_SHEET, GALLERY, MAX_CAMS, MAX_TILE_PX
from engine.run.heavy_imports import heavy_imports
from engine.run.rundir import CHECKPOINTS


def write_cams(run_dir: Path, indices: list[int]) -> Path:
    with heavy_imports():
        import numpy as np
        import torch
        from PIL import Image

        from engine.data.pipeline import normalize
        from engine.data.sources import load_data
        from engine.run.config import TrainConfig
        from engine.run.fileio import atomic_write, atomic_write_json
        from engine.train.cam import cam_layer, grad_cam, overlay
        from engine.train.checkpoint import load_checkpoint
        from engine.train.models import build_model
        from engine.train.sheet import scaled, tile_sheet

    checkpoint = load_checkpoint(run_dir / CHECKPOINTS / "last.pt")
    cfg = TrainConfig.from_dict(checkpoint["config"]).with_overrides(weights="none", device="cpu")
    quiet = lambda _kind, _text: None  # noqa: E731
    data = load_data(cfg, quiet)
    n = len(data.test)
    if bad := [i for i in indices if not 0 <= i < n]:
        raise UserError(f"no test image {bad[0]}: the run's test split holds {n}")
    model = build_model(cfg, len(data.class_names), quiet)
    model.load_state_dict(checkpoint["model"])
    images = data.test.images[indices]
    x = normalize(images)
    with torch.no_grad():
        predicted = model.eval()(x).argmax(1)
    truth = data.test.labels[indices]
    name, layer = cam_layer(model, int(images.shape[-1]))
    maps = torch.stack([grad_cam(model, layer, x, predicted), grad_cam(model, layer, x, truth)], 1)  # (N, 2, H, W)
    tile_px = min(int(images.shape[-1]), MAX_TILE_PX)
    images, maps = scaled(images, tile_px), scaled(maps, tile_px, mode="bilinear")
    tiles = [overlay(image, pair[j]) for image, pair in zip(images.permute(0, 2, 3, 1).numpy(), maps.numpy(),
                                                            strict=True) for j in range(2)]  # fmt: skip
    sheet = tile_sheet(np.stack(tiles), 2, tile_px)
    folder = run_dir / GALLERY
    folder.mkdir(exist_ok=True)
    atomic_write(folder / CAM_SHEET, lambda f: Image.fromarray(sheet).save(f, format="PNG"))
    rows = {str(i): {"row": k, "predicted": int(p), "true": int(t)}
            for k, (i, p, t) in enumerate(zip(indices, predicted.tolist(), truth.tolist(), strict=True))}  # fmt: skip
    atomic_write_json(folder / CAM_JSON, {"global_step": int(checkpoint["global_step"]), "layer": name,
                                          "tile_px": tile_px, "images": rows})  # fmt: skip
    return folder / CAM_JSON


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.session.cam", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("indices", nargs="+", type=int, metavar="INDEX")
    args = p.parse_args(argv)
    return one_line_command(
        lambda: write_cams(args.run_dir, list(dict.fromkeys(args.indices))[:MAX_CAMS]), "cannot write the maps"
    )


if __name__ == "__main__":
    sys.exit(main())
