"""``python -m engine.session.preflight``: the checks before N ranks start (the device, the data,
a resumed checkpoint), made in a process of their own so that the process that launches the
ranks never imports torch. The config comes as JSON on stdin; a refusal is one line on stdout
and exit 2 (1 for anything else), progress (a download) goes to stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.run.config import TrainConfig
from engine.run.errors import EXIT_CRASH, EXIT_USAGE, UserError, first_line
from engine.run.events import Phase
from engine.run.heavy_imports import heavy_imports


def check(cfg: TrainConfig) -> None:
    """What one process refuses once it has started (ConfigError, DataError... as UserError)."""
    with heavy_imports():
        from engine.data.sources import load_data
        from engine.train.checkpoint import load_checkpoint
        from engine.train.device import resolve_device
        from engine.train.setup import merge_resume_config

    if cfg.resume:  # the data and model are the checkpoint's
        cfg = merge_resume_config(cfg, load_checkpoint(Path(cfg.resume))["config"])
    if cfg.device != "cpu":  # (a CPU is always there)
        resolve_device(cfg.device)

    def notify(kind: str, message: str) -> None:
        if kind in (Phase.LOADING_DATA, Phase.DOWNLOADING, "warning"):
            print(f"[{kind}] {message}", file=sys.stderr, flush=True)

    if cfg.data != "demo":  # (generated: it cannot fail)
        load_data(cfg, notify)


def main() -> int:
    try:
        check(TrainConfig.from_dict(json.loads(sys.stdin.read())))
    except UserError as exc:
        print(first_line(exc), flush=True)
        return EXIT_USAGE
    except Exception as exc:  # not the user's input, but still one line for the launcher to show
        print(f"{type(exc).__name__}: {first_line(exc)}", flush=True)
        return EXIT_CRASH
    return 0


if __name__ == "__main__":
    sys.exit(main())
