"""Each training option's kind (what it trains, how it runs, where it is written) and whether a
resume may change it: the runs comparison, the resume check and the export read this one table."""

from __future__ import annotations

TRAINS = "trains"
"""What is trained: a different value makes a different experiment."""
RUNS = "runs"
"""How it runs (device, loader, logging): the same experiment either way."""
WRITTEN = "written"
"""Where and how the run is written down: left out when runs are compared."""

FIELD_KINDS: dict[str, tuple[str, bool]] = {
    # name: (kind, may change when resuming)
    "recipe": (TRAINS, False), "data": (TRAINS, False), "image_size": (TRAINS, False),
    "train_limit": (TRAINS, False), "test_limit": (TRAINS, False), "arch": (TRAINS, False),
    "weights": (TRAINS, False), "stem": (TRAINS, False), "zero_init_residual": (TRAINS, False),
    "epochs": (TRAINS, True), "batch_size": (TRAINS, False), "lr": (TRAINS, False), "momentum": (TRAINS, False),
    "nesterov": (TRAINS, False), "weight_decay": (TRAINS, False), "decay_norms": (TRAINS, False),
    "optimizer": (TRAINS, False), "schedule": (TRAINS, False), "warmup_epochs": (TRAINS, False),
    "label_smoothing": (TRAINS, False), "amp": (TRAINS, False), "channels_last": (TRAINS, False),
    "sync_bn": (TRAINS, True), "tta": (TRAINS, False), "tta_translate": (TRAINS, False),
    "pad_mode": (TRAINS, False), "flip": (TRAINS, False), "cutout": (TRAINS, False), "drop_last": (TRAINS, False),
    "ema": (TRAINS, False), "seed": (TRAINS, False),
    "compile": (RUNS, True), "loader": (RUNS, True), "workers": (RUNS, True), "eval_batch_size": (RUNS, True),
    "eval_every": (RUNS, True), "early_stop": (TRAINS, True), "target_accuracy": (TRAINS, True),
    "lr_find": (RUNS, True), "lr_find_start": (RUNS, True), "lr_find_end": (RUNS, True),
    "lr_find_steps": (RUNS, True),
    "device": (RUNS, True), "log_every": (RUNS, True), "data_dir": (RUNS, True), "resume": (RUNS, True),
    "keep": (RUNS, True), "rank_timeout": (RUNS, True),
    "progress_hz": (WRITTEN, True), "run_dir": (WRITTEN, True), "runs_root": (WRITTEN, True),
    "name": (WRITTEN, True), "tags": (WRITTEN, True), "notes": (WRITTEN, True),
    "overwrite": (WRITTEN, True), "save_wait": (WRITTEN, True), "explicit": (WRITTEN, True),
}  # fmt: skip
"""Every option's kind, and whether it may differ from a checkpoint's config when resuming
(a test holds this table to the dataclass's fields)."""

RESUME_MAY_CHANGE = frozenset(name for name, (_, on_resume) in FIELD_KINDS.items() if on_resume)
NOT_COMPARED = tuple(name for name, (kind, _) in FIELD_KINDS.items() if kind == WRITTEN)
