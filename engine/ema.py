"""Exponential moving average of the weights, evaluated instead of the raw weights when enabled."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEma:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` (buffers copied as they are).

    The decay ramps up as ``(1 + n) / (10 + n)`` so early averages are not dominated by
    the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine = self.model.state_dict()
        floats_s, floats_m = [], []
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                floats_s.append(mine[name])
                floats_m.append(value)
            else:
                mine[name].copy_(value)
        torch._foreach_lerp_(floats_s, floats_m, 1.0 - decay)

    def state_dict(self) -> dict[str, object]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[call-overload]
