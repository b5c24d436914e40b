"""Model construction options that change what a run starts from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

from engine.run.config import from_recipe
from engine.run.errors import ConfigError
from engine.train.models import build_model


def _model(**options: object) -> torch.nn.Module:
    cfg = from_recipe("tutorial", weights="none", **options)
    return build_model(cfg, 10, lambda _kind, _text: None).eval()


def test_zero_init_residual_makes_every_block_start_as_its_shortcut() -> None:
    torch.manual_seed(0)
    model = _model(stem="cifar", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    x = torch.randn(2, 64, 8, 8)
    # A block without a downsampling shortcut passes its input through (after the ReLU) untouched.
    assert torch.equal(blocks[0](x), torch.relu(x))
    down = next(b for b in blocks if b.downsample is not None)
    x = torch.randn(2, down.conv1.in_channels, 8, 8)
    assert torch.allclose(down(x), torch.relu(down.downsample(x)))
    # Off (the default), the residual branches add to the signal from the first step.
    plain = next(m for m in _model(stem="cifar").modules() if isinstance(m, BasicBlock))
    x = torch.randn(2, 64, 8, 8)
    assert not torch.allclose(plain(x), torch.relu(x), atol=1e-3)


def test_zero_init_residual_on_bottleneck_resnets_zeroes_the_third_norm() -> None:
    model = _model(arch="resnet50", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert blocks and all(bool((b.bn3.weight == 0).all()) and bool((b.bn2.weight == 1).all()) for b in blocks)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"arch": "mobilenet_v3_small", "weights": "none"}, "ResNet-family archs only"),
        ({"weights": "imagenet"}, "needs --weights none"),
    ],
)
def test_zero_init_residual_refuses_what_it_cannot_do(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_recipe("tutorial", zero_init_residual=True, **options)


def test_the_fast_recipes_start_residual_branches_at_zero_unless_weights_are_loaded(tmp_path: Path) -> None:
    model = build_model(from_recipe("fast"), 10, lambda _kind, _text: None)
    assert all(bool((b.bn2.weight == 0).all()) for b in model.modules() if isinstance(b, BasicBlock))
    # With pretrained weights the recipe's value yields to them (no error, the loaded scales kept).
    saved = torchvision.models.resnet18().state_dict()
    torch.save(saved, tmp_path / "w.pt")
    cfg = from_recipe("fast95", weights=str(tmp_path / "w.pt"))
    loaded = build_model(cfg, 10, lambda _kind, _text: None)
    assert torch.equal(loaded.layer1[0].bn2.weight, saved["layer1.0.bn2.weight"])  # type: ignore[index,union-attr]
