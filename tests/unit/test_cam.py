"""Where the model looked: Grad-CAM through Captum, on the stage that still has a map to show."""

from __future__ import annotations

import torch
from torch import nn

from engine.run.config import from_recipe
from engine.train.cam import cam_layer, grad_cam
from engine.train.models import build_model


class LeftHalfOnly(nn.Module):
    """Zeroes the right half of a feature map: what comes after sees only the image's left half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-1] // 2] = 1
        return x * mask


def model_for(stem: str) -> nn.Module:
    cfg = from_recipe("tutorial", data="demo", weights="none", device="cpu", stem=stem)
    torch.manual_seed(0)
    return build_model(cfg, 10, lambda _kind, _text: None)


def test_a_model_that_sees_only_the_left_half_is_mapped_to_the_left_half() -> None:
    model = model_for("cifar")  # its last stage is 4 x 4 at 32 px
    assert cam_layer(model, 32)[0] == "layer4"
    model.layer4 = nn.Sequential(model.layer4, LeftHalfOnly())
    x = torch.randn(6, 3, 32, 32)
    targets = model.eval()(x).argmax(1)
    maps = grad_cam(model, model.layer4, x, targets)
    assert maps.shape == (6, 32, 32) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    left, right = maps[..., :16].sum(), maps[..., 16:].sum()
    assert left > 10 * right  # the map lights the half the model sees
    assert float(maps[..., 24:].max()) == 0.0  # (the middle blurs: the 4 x 4 map is upsampled bilinearly)


def test_the_map_is_taken_where_the_stage_still_has_4x4_places() -> None:
    # Through the ImageNet stem a 32 px image leaves layer4 1 x 1 and layer3 2 x 2: layer2 is 4 x 4.
    assert cam_layer(model_for("imagenet"), 32)[0] == "layer2"
    assert cam_layer(model_for("imagenet"), 128)[0] == "layer4"
