"""One rank of a test's data-parallel run with a fault in rank 1 (tests only), run by torchrun:
``python -m engine.torchrun --standalone --nproc-per-node=2 -m tests.rank_faults FAULT ARGS...``.

``diverge-after-N``: rank 1's loss becomes NaN from its (N+1)th step on, the others' stays finite
(a bad shard, an overflow on one GPU). ARGS are ``python -m engine``'s."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch.nn.functional as F

from engine.cli import main


def diverge_after(steps: int) -> None:
    real = F.cross_entropy
    calls = [0]

    def cross_entropy(*args: Any, **kwargs: Any) -> Any:
        loss = real(*args, **kwargs)
        if "reduction" in kwargs:  # an evaluation's summed loss: only training steps go wrong
            return loss
        calls[0] += 1
        return loss * float("nan") if calls[0] > steps else loss

    F.cross_entropy = cross_entropy


if __name__ == "__main__":
    fault, argv = sys.argv[1], sys.argv[2:]
    if os.environ.get("RANK") == "1":
        if not fault.startswith("diverge-after-"):
            sys.exit(f"unknown fault {fault!r}")
        diverge_after(int(fault.removeprefix("diverge-after-")))
    sys.exit(main(argv))
