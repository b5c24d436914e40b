"""One rank of a test's data-parallel run, with something changed (tests only), run by torchrun:
``python -m engine.ranks.torchrun --standalone --nproc-per-node=2 -m tests.helpers.rank_harness MODE ARGS...``
(ARGS are ``python -m engine``'s).

- ``diverge-after-N``: rank 1's loss becomes NaN from its (N+1)th step on, the others' stays
  finite (a bad shard, an overflow on one GPU).
- ``compile-counted``: every rank takes the --compile path (CUDA-only otherwise) with a
  backend that runs the traced graphs eagerly and counts them; after each evaluation a rank
  prints ``rank R after evaluation at step S: N graphs`` to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from engine.run.heavy_imports import heavy_imports

with heavy_imports():  # as a rank's own imports are (engine/headless.py)
    import torch
    import torch.nn.functional as F

    import engine.train.setup as train_setup
    import engine.train.trainer as trainer
    from engine.cli import main
    from engine.train.loop import TrainLoop


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


def compile_counted(rank: str) -> None:
    graphs = [0]

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        graphs[0] += 1
        return gm.forward  # no C compiler needed: the traced graph runs eagerly

    trainer.can_compile = lambda device: True  # type: ignore[assignment]
    train_setup.compile_model = lambda model: torch.compile(model, backend=counting_backend, dynamic=False)  # type: ignore[assignment]
    evaluation = TrainLoop.run_evaluation

    def run_evaluation(self: Any, reason: str) -> Any:
        result = evaluation(self, reason)
        print(f"rank {rank} after evaluation at step {self.state.global_step}: {graphs[0]} graphs", file=sys.stderr)
        return result

    TrainLoop.run_evaluation = run_evaluation  # type: ignore[method-assign]


if __name__ == "__main__":
    mode, argv = sys.argv[1], sys.argv[2:]
    rank = os.environ.get("RANK", "0")
    if mode.startswith("diverge-after-"):
        if rank == "1":
            diverge_after(int(mode.removeprefix("diverge-after-")))
    elif mode == "compile-counted":
        compile_counted(rank)
    else:
        sys.exit(f"unknown mode {mode!r}")
    sys.exit(main(argv))
