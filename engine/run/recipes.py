"""The named recipes: each a set of option values over TrainConfig's defaults (the tutorial's)."""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # The tutorial, value for value (the dataclass defaults).
    "tutorial": {},
    # The ResNet-18 baseline of Keller Jordan's CIFAR-10 speed-run work (airbench, "ResNet-18
    # training script optimized for time-to-94%"): 26 epochs, batch 500, Nesterov SGD lr 0.2,
    # weight decay 5e-4 on every parameter, triangular schedule (0.2x -> 1x over the first 20%,
    # then to 0), flip + reflect-padded 4-pixel translation + Cutout(12), flip TTA. Published:
    # 94.0% mean test accuracy, about 51 s on an A100. Ours: bf16 autocast instead of fp16 weights,
    # and zero-initialised residual branches: without them the warm-up diverges when a shorter
    # run compresses it (measured: docs/benchmarks.md, "A recipe's first steps").
    "fast": {
        "weights": "none",
        "stem": "cifar",
        "zero_init_residual": True,
        "epochs": 26,
        "batch_size": 500,
        "lr": 0.2,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "decay_norms": True,
        "schedule": "triangular",
        "warmup_epochs": 5.2,
        "amp": True,
        "channels_last": True,
        "tta": True,
        "pad_mode": "reflect",
        "cutout": 12,
        "drop_last": True,
        "loader": "tensor",
        "eval_batch_size": 1000,
        "log_every": 50,
    },
}
# The same recipe trained three times longer (airbench's 80-epoch ResNet-18: 95.9% published),
# with alternating flips (each image seen both ways in any two epochs) and translation TTA.
RECIPES["fast95"] = {**RECIPES["fast"], "epochs": 80, "warmup_epochs": 16.0, "flip": "alternate", "tta_translate": True}
