"""Exponential moving average of the weights, evaluated instead of the raw weights when enabled."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _tensors(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The model's floating-point tensors (parameters, then float buffers) and its other buffers,
    in a fixed order: the averaged ones and the copied ones (e.g. BatchNorm's batch counter)."""
    floats = [p.data for p in model.parameters()]
    others: list[torch.Tensor] = []
    for b in model.buffers():
        (floats if b.is_floating_point() else others).append(b)
    return floats, others


class WeightEma:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` (integer buffers copied as they are).

    The decay ramps up as ``(1 + n) / (10 + n)`` so early averages are not dominated by the
    random initialisation. An update is two foreach ops over lists built once: no state dicts,
    no per-tensor Python, no host sync.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._shadow = _tensors(self.model)
        self._source: nn.Module | None = None
        self._live: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if model is not self._source:  # the lists hold the tensors themselves: build them once per model
            self._source, self._live = model, _tensors(model)
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._shadow[0], self._live[0], 1.0 - decay)
        if self._shadow[1]:
            torch._foreach_copy_(self._shadow[1], self._live[1])

    def state_dict(self) -> dict[str, object]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
