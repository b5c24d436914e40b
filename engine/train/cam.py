"""Where the model looked: Grad-CAM maps from Captum (``LayerGradCam``), PyTorch's own
interpretability library, overlaid on the images.

The map is taken on the last convolutional stage whose output is still at least 4 x 4: for a
32 px image through the ImageNet stem (the tutorial's), ResNet-18's last stage is 1 x 1 and a map
of one value shows nothing, so the stage before it is used (named with the picture)."""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

MIN_SIDE = 4


def cam_layer(model: nn.Module, image_size: int) -> tuple[str, nn.Module]:
    """(name, module) of the stage Grad-CAM reads: the last of the model's top-level blocks
    (ResNet's layer1..layer4) or, failing those, of its convolutions, whose output is at least
    MIN_SIDE on a side for an ``image_size`` input."""
    named = [(n, m) for n, m in model.named_children() if n.startswith("layer")]
    if not named:
        named = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    sides: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: sides.__setitem__(n, int(out.shape[-1])))
             for n, m in named]  # fmt: skip
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    usable = [(n, m) for n, m in named if sides.get(n, 0) >= MIN_SIDE]
    return usable[-1] if usable else named[0]


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``targets`` (one class per image) at ``layer``, upsampled to the images' size,
    each map scaled to [0, 1] (all zeros where nothing speaks for the class): (N, H, W)."""
    model.eval()
    attribution = LayerGradCam(model, layer).attribute(x, target=targets.tolist(), relu_attributions=True)
    maps = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    peak = maps.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
    return (maps / peak).clamp(0, 1).detach()


def overlay(image: np.ndarray, heat: np.ndarray, strength: float = 0.55) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with ``heat`` (H, W in [0, 1]) laid over it in a blue-to-red scale."""
    colour = np.stack([heat, 1 - np.abs(2 * heat - 1), 1 - heat], axis=-1)  # red high, blue low
    alpha = strength * heat[..., None] ** 0.5
    mixed = (1 - alpha) * image.astype(np.float32) / 255 + alpha * colour
    return (mixed.clip(0, 1) * 255).round().astype(np.uint8)
