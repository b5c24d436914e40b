"""Picture sheets: tiles scaled to at most the gallery's tile size and laid out in a grid, the
one way the mistakes gallery, the activation maps and the batch view build their PNGs."""

from __future__ import annotations

import numpy as np
import torch


def scaled(images: torch.Tensor, tile_px: int, mode: str = "area") -> torch.Tensor:
    """``images`` (N x C x H x W) at ``tile_px`` square: uint8 stays uint8 (rounded), maps stay float."""
    if images.shape[-1] == tile_px or not len(images):
        return images
    out = torch.nn.functional.interpolate(images.float(), size=(tile_px, tile_px), mode=mode)
    return out.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else out


def tile_sheet(tiles: np.ndarray, columns: int, tile_px: int) -> np.ndarray:
    """``tiles`` (N x tile_px x tile_px x 3, uint8) row by row in ``columns``; black where none."""
    rows = max(1, -(-len(tiles) // columns))
    sheet = np.zeros((rows * tile_px, columns * tile_px, 3), dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * tile_px : (r + 1) * tile_px, c * tile_px : (c + 1) * tile_px] = tile
    return sheet
