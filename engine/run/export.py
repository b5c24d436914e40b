"""A run's metrics for other tools: CSV files, and TensorBoard event files.

Both are read from the run's events.jsonl and written so that nothing already there is left
half-written: CSV files atomically, a TensorBoard folder built beside its final place and
swapped in.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.run import events as ev
from engine.run.fileio import atomic_write
from engine.run.heavy_imports import heavy_imports
from engine.run.label import run_title
from engine.run.rundir import read_events, slug


def export_name(run_dir: Path) -> str:
    """The folder a run's export goes in, among others': its name (--name) as a safe folder name."""
    return slug(run_title(run_dir))


class ExportError(Exception):
    """A one-line reason an export cannot be written (a missing package, not a bug)."""


def csv_bytes(header: list[str], rows: Sequence[Sequence[object]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogateescape")


def export_csv(run_dir: Path, out_dir: Path) -> list[Path]:
    """Write steps.csv, epochs.csv and steering.csv (every steering act, refused ones too),
    atomically, for plotting elsewhere; returns their paths."""
    events = read_events(run_dir)
    steps = [[e.global_step, e.epoch + 1, e.step, e.loss, e.lr, e.images_per_sec, e.data_wait, e.elapsed]
             for e in events if isinstance(e, ev.Progress)]  # fmt: skip
    epochs = [[e.epoch, e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy, e.images_per_sec, e.seconds,
               e.eval_seconds, e.lr] for e in events if isinstance(e, ev.EpochEnd)]  # fmt: skip
    acts = [[e.global_step, e.epoch, e.what, *(f"{v:g}" for v in (e.old, e.new, e.old_extra, e.new_extra)), e.source,
             e.refused]
            for e in events if isinstance(e, ev.Steered)]  # fmt: skip
    files = {
        out_dir / "steps.csv": csv_bytes(
            ["global_step", "epoch", "step", "loss", "lr", "images_per_sec", "data_wait", "elapsed_s"], steps
        ),
        out_dir / "epochs.csv": csv_bytes(
            [
                "epoch",
                "train_loss",
                "train_accuracy",
                "test_loss",
                "test_accuracy",
                "images_per_sec",
                "seconds",
                "eval_seconds",
                "lr",
            ],
            epochs,
        ),
        out_dir / "steering.csv": csv_bytes(
            ["global_step", "epoch", "what", "old", "new", "old_extra", "new_extra", "source", "refused"], acts
        ),
    }
    for path, data in files.items():
        atomic_write(path, lambda f, data=data: f.write(data))  # type: ignore[misc]
    return list(files)


def export_tensorboard(run_dir: Path, logdir: Path, name: str = "") -> Path:
    """Write the run as TensorBoard event files in ``logdir/<run name>/`` (its --name, else its
    folder's; so that one logdir holds
    many runs to compare) and return that folder; an earlier export of the run is replaced whole."""
    try:
        with heavy_imports():
            from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch says "TensorBoard logging requires TensorBoard..." when it is missing
        raise ExportError("TensorBoard export needs the tensorboard package: pip install tensorboard") from exc
    events = read_events(run_dir)
    target = logdir / (name or export_name(run_dir))
    logdir.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=logdir))
    try:
        writer = SummaryWriter(log_dir=str(building))
        _write_scalars(writer, events)
        _write_confusion(writer, events)
        _write_hparams(writer, events)
        _write_mistakes(writer, run_dir)
        writer.close()
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(building, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _write_scalars(writer: object, events: list[ev.Event]) -> None:
    """Scalars at global steps (epoch metrics at the step where their epoch ended), with the
    wall-clock times the run measured them at."""
    add = writer.add_scalar  # type: ignore[attr-defined]
    steps_per_epoch = 1
    for e in events:
        if isinstance(e, ev.RunStarted):
            steps_per_epoch = max(1, e.steps_per_epoch)
            config = json.dumps(e.config, indent=2, sort_keys=True)
            writer.add_text("config", "    " + config.replace("\n", "\n    "), e.start_epoch * steps_per_epoch)  # type: ignore[attr-defined]
        elif isinstance(e, ev.Progress):
            add("train/loss", e.loss, e.global_step, walltime=e.t)
            add("train/lr", e.lr, e.global_step, walltime=e.t)
            add("train/images_per_sec", e.images_per_sec, e.global_step, walltime=e.t)
        elif isinstance(e, ev.EpochEnd):
            step = e.epoch * steps_per_epoch
            add("epoch/train_loss", e.train_loss, step, walltime=e.t)
            add("epoch/train_accuracy", 100 * e.train_accuracy, step, walltime=e.t)
            add("epoch/test_loss", e.test_loss, step, walltime=e.t)
            add("epoch/test_accuracy", 100 * e.test_accuracy, step, walltime=e.t)
        elif isinstance(e, ev.Steered):  # what was changed by hand, at the step it took effect
            writer.add_text("steering", e.message, e.global_step, walltime=e.t)  # type: ignore[attr-defined]
            if e.what == "lr_scale" and not e.refused:
                add("train/lr_scale", e.new, e.global_step, walltime=e.t)
        elif isinstance(e, ev.Evaluation):
            if e.reason != "epoch":  # an epoch's evaluation is already under epoch/
                add(f"eval_{e.reason}/accuracy", 100 * e.accuracy, e.global_step, walltime=e.t)
                add(f"eval_{e.reason}/loss", e.loss, e.global_step, walltime=e.t)
            for name, accuracy in zip(e.class_names, e.per_class):
                add(f"class_accuracy/{name}", 100 * accuracy, e.global_step, walltime=e.t)


def _write_confusion(writer: object, events: list[ev.Event]) -> None:
    """The last evaluation's confusion matrix as a table (TensorBoard's Text tab): rows are the
    true class, columns the predicted one."""
    last = next((e for e in reversed(events) if isinstance(e, ev.Evaluation) and e.confusion), None)
    if last is None:
        return
    head = "| true \\ predicted | " + " | ".join(last.class_names) + " |"
    rule = "|" + "---|" * (len(last.class_names) + 1)
    rows = [
        f"| **{name}** | " + " | ".join(str(n) for n in row) + " |"
        for name, row in zip(last.class_names, last.confusion)
    ]
    writer.add_text("confusion_matrix", "\n".join([head, rule, *rows]), last.global_step)  # type: ignore[attr-defined]


def _write_mistakes(writer: object, run_dir: Path) -> None:
    """The gallery's most confident mistakes as one labelled picture (TensorBoard's Images tab),
    at the step of the evaluation they come from; and the latest batch view (before | after
    augmentation) where one was made, at its epoch."""
    import numpy as np

    from engine.run.gallery import read_batch_view, read_gallery
    from engine.run.gallery_export import batch_grid, labelled_grid

    gallery = read_gallery(run_dir)
    if gallery is not None and gallery.mistakes:
        grid = np.asarray(labelled_grid(gallery, gallery.most_confident()[:40]))
        writer.add_image("mistakes", grid, gallery.global_step, dataformats="HWC")  # type: ignore[attr-defined]
    view = read_batch_view(run_dir)  # made by b in the dashboard or by export --batch
    if view is not None:
        pairs = np.asarray(batch_grid(view))
        writer.add_image("training_batch", pairs, view.epoch, dataformats="HWC")  # type: ignore[attr-defined]


def _write_hparams(writer: object, events: list[ev.Event]) -> None:
    """What the run trained with and how well it did, for TensorBoard's HParams tab (the options
    that make a different experiment, as the runs screen compares them)."""
    from engine.run.field_kinds import FIELD_KINDS, TRAINS

    started = [e for e in events if isinstance(e, ev.RunStarted)]
    if not started:
        return
    config = started[-1].config
    hparams = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in config.items()
               if FIELD_KINDS.get(k, ("", False))[0] == TRAINS}  # fmt: skip
    tested = [e.test_accuracy for e in events if isinstance(e, ev.EpochEnd)]
    finished = [e for e in events if isinstance(e, ev.Finished)]
    metrics = {
        "hparam/best_test_accuracy": 100 * max(tested) if tested else float("nan"),
        "hparam/final_test_accuracy": 100 * tested[-1] if tested else float("nan"),
        "hparam/epochs_done": float(finished[-1].epochs_done if finished else len(tested)),
    }
    writer.add_hparams(hparams, metrics, run_name=".")  # type: ignore[attr-defined]
