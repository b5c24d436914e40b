"""Wording shared by the headless lines and the dashboard (no torch, no textual)."""

from __future__ import annotations

from pathlib import Path


def plural(n: int, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def weights_phrase(weights: str) -> str:
    """How the model's starting weights read to a person."""
    if weights == "none":
        return "from scratch"
    if weights == "imagenet":
        return "ImageNet weights"
    return f"weights from {Path(weights).name}"


def model_phrase(config: dict) -> str:
    """'resnet18 (ImageNet weights, imagenet stem)'."""
    return f"{config['arch']} ({weights_phrase(str(config['weights']))}, {config['stem']} stem)"
