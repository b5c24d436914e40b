"""``python -m engine.ranks.torchrun ARGS``: PyTorch's torchrun (``torch.distributed.run``), with a rank's
failure said in one line instead of torchrun's traceback (the run's events say why it failed)."""

from __future__ import annotations

import sys

from engine.run.heavy_imports import heavy_imports

with heavy_imports():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main


def main() -> int:
    try:
        torchrun_main(sys.argv[1:])
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        how = f"killed by signal {-failure.exitcode}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(f"cifar-tui: training process rank {rank} ended first ({how}); the others were stopped",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
