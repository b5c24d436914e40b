"""Wording shared by the headless lines and the dashboard (no torch, no textual)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from engine.run import events as ev


def megabytes(size: int) -> str:
    """' (85.3 MB)' for a file's size in bytes; '' when not known."""
    return f" ({size / 1e6:,.1f} MB)" if size else ""


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


def duration(seconds: float | None) -> str:
    """'4m05s', '1h02m03s'; '--' when unknown. The one duration format of the CLI and the dashboard."""
    if seconds is None:
        return "--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class CountProgress:
    """A long count made visible: '<verb> 12,000/60,000 <noun>, 750/s, ETA 1m04s', at most every
    ``every_s`` seconds, through ``report`` (a status event, a notify callback)."""

    def __init__(self, verb: str, noun: str, total: int, report: Callable[[str], None], every_s: float = 2.0) -> None:
        self.verb, self.noun, self.total, self.report, self.every_s = verb, noun, total, report, every_s
        self.done = 0
        self.began = self.last = time.monotonic()

    def step(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < self.every_s or done >= self.total:
            return
        self.last = now
        rate = done / max(now - self.began, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        self.report(f"{self.verb} {done:,}/{self.total:,} {self.noun}, {rate:,.0f}/s, ETA {duration(eta)}")


def percent(x: float | None, digits: int = 2, missing: str = "n/a") -> str:
    """A fraction as '62.80%'; ``missing`` when not measured. The one percent format of the CLI
    and the dashboard (the dashboard's panes write '--' for missing and one digit)."""
    return missing if x is None else f"{100 * x:.{digits}f}%"


def event_lines(e: ev.Event) -> list[tuple[str, str]]:
    """The log lines an event stands for, as (level, text): the one wording of the headless
    output and the dashboard's log pane. Progress, status and the start's summary are shown by
    each in its own way (the tutorial's loss lines, the progress pane), so they are not here."""
    if isinstance(e, ev.Log):
        return [(e.level, e.message)]
    if isinstance(e, ev.RunStarted):
        return [("info", f"run directory {e.run_dir}")]
    if isinstance(e, ev.Detached):
        return [("info", e.message)]
    if isinstance(e, ev.EpochEnd):
        return [("info", f"epoch {e.epoch}/{e.epochs}: train loss {e.train_loss:.4f} acc {percent(e.train_accuracy)} | "
                 f"test loss {e.test_loss:.4f} acc {percent(e.test_accuracy)} | {e.images_per_sec:,.0f} img/s | "
                 f"{e.seconds:.1f}s + eval {e.eval_seconds:.1f}s")]  # fmt: skip
    if isinstance(e, ev.Evaluation) and e.reason in ("request", "interval"):
        return [("info", f"evaluation at epoch {e.epoch + 1} step {e.step}: "
                 f"test loss {e.loss:.4f} acc {percent(e.accuracy)}")]  # fmt: skip
    if isinstance(e, ev.CheckpointSaved) and e.reason not in ("epoch", "best"):
        return [("info", f"checkpoint saved ({e.reason}): {e.path}{megabytes(e.size)}")]
    if isinstance(e, ev.LrFound):
        use = [] if e.valley is None else [("info", f"lr-find: to train at the suggestion: --lr {e.valley:.2e} "
                                                    "(or --lr-find use)")]  # fmt: skip
        return [("info" if e.valley is not None else "warning", e.message), *([] if e.asks else use)]
    if isinstance(e, ev.Steered):
        return [("warning" if e.refused else "info", e.message)]
    if isinstance(e, ev.Paused | ev.Resumed):
        return [("info", f"{'paused' if isinstance(e, ev.Paused) else 'resumed'} at step {e.global_step}")]
    if isinstance(e, ev.Finished):
        # Best of the epoch ends; a run stopped before its first one may still have an evaluate-now result.
        best = e.best_accuracy if e.best_accuracy is not None else e.test_accuracy
        accuracy = (
            "no test accuracy yet"
            if best is None
            else f"test accuracy {percent(e.test_accuracy)} (best {percent(best)})"
        )
        lines = [("info", f"{e.reason}{f' ({e.cause})' if e.cause else ''}: {plural(e.epochs_done, 'epoch')}, "
                  f"{accuracy} in {duration(e.seconds)}" + (f" | checkpoint {e.checkpoint}" if e.checkpoint else ""))]  # fmt: skip
        if e.unsaved:
            lines.append(("error", f"{e.unsaved}: this run's end is in no checkpoint; the last good one is "
                                   f"{e.checkpoint or 'none'}"))  # fmt: skip
        return lines
    if isinstance(e, ev.Failed):
        return [("error", f"{e.error}: {e.message}")] + [("error", line) for line in e.traceback.rstrip().splitlines()]
    return []


def per_class_rows(evaluation: ev.Evaluation) -> list[tuple[str, float, str]]:
    """(class, accuracy, mark) per class, mark 'best' or 'worst' (or ''): the one per-class table
    of the headless summary and the dashboard's pane."""
    best, worst = max(evaluation.per_class), min(evaluation.per_class)
    return [
        (name, acc, "best" if acc == best else "worst" if acc == worst else "")
        for name, acc in zip(evaluation.class_names, evaluation.per_class)
    ]


def distinct(names: list[str], width: int) -> list[str]:
    """``names`` cut to ``width`` characters without losing where they differ: the part they all
    start with goes first (shown as …), then, if cutting the end would make two look the same,
    the part they all end with; each at a ``-``/``_``/space boundary, so no word is split."""

    def cut(items: list[str]) -> list[str]:
        return [n if len(n) <= width else n[: width - 1] + "…" for n in items]

    if all(len(n) <= width for n in names) or width < 4 or len(names) < 2:
        return cut(names)
    prefix = _boundary(_common_start(names), from_end=False)
    out = ["…" + n[len(prefix) :] for n in names] if prefix else list(names)
    if len(set(cut(out))) < len(set(names)):
        suffix = _boundary(_common_start([n[::-1] for n in out])[::-1], from_end=True)
        if suffix and all(len(n) > len(suffix) + 1 for n in out):
            out = [n[: len(n) - len(suffix)] + "…" for n in out]
    return cut(out)


def _boundary(common: str, *, from_end: bool) -> str:
    """``common`` trimmed to end (or, for a suffix, to start) at a separator, so no word is split."""
    seps = "-_ /"
    if from_end:
        at = next((i for i, c in enumerate(common) if c in seps), None)
        return common[at:] if at is not None else ""
    at = max((i for i, c in enumerate(common) if c in seps), default=-1)
    return common[: at + 1]


def _common_start(texts: list[str]) -> str:
    """The characters every one of ``texts`` starts with."""
    first, last = min(texts), max(texts)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:n]
