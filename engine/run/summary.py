"""Runs as seen from their directories: state and summary. No torch needed.

A run's state comes from its last events and whether its trainer process still lives:
running, paused, finished, failed, stopped (stopped on request, or its process died
without a final report: kill -9, reboot — resumable from checkpoints/last.pt).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.run import events as ev
from engine.run.control_socket import trainer_alive
from engine.run.controls import PRUNED_CAUSE
from engine.run.fileio import atomic_write_json
from engine.run.label import read_label
from engine.run.rundir import EVENTS, SUMMARY, read_events
from engine.run.steering import BRIEF, EARLY_STOP, EPOCHS, TARGET, rule_text, shown
from engine.run.summary_cache import SummaryCache

# Events after which the trainer rewrites summary.json (not progress: that is every few steps).
SUMMARY_EVENTS = (ev.RunStarted, ev.EpochEnd, ev.Evaluation, ev.Paused, ev.Resumed, ev.Finished, ev.Failed)


@dataclass
class RunSummary:
    """What the runs list and the runs screen show of a run: small, and kept up to date by the
    trainer in ``summary.json``, so listing runs never reads whole event logs."""

    name: str
    path: str
    state: str
    recipe: str
    data: str
    epochs_done: int
    epochs: int
    best_accuracy: float | None
    started: float | None
    duration: float | None
    final_accuracy: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[float, float]] = field(default_factory=list)  # (epoch, test accuracy %)
    title: str = ""  # what a person called it (label.json), else the folder's name
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    archived: bool = False
    steered: list[str] = field(default_factory=list)  # each steering act, briefly: "lr x0.5 @ step 300"

    def __post_init__(self) -> None:
        self.title = self.title or self.name

    def matches(self, text: str) -> bool:
        """Whether ``text`` (case-insensitive) is in the title, folder name, a tag, the notes,
        the recipe or the data."""
        t = text.lower()
        return any(t in part.lower() for part in (self.title, self.name, self.notes, self.recipe, self.data,
                                                  *self.tags))  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class SummaryFold:
    """Folds a run's events, in order, into its summary: the trainer's sink feeds it live, and a
    run without a readable summary.json is folded from its events.jsonl the same way."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.status = ""  # running / paused / finished / stopped / failed, as last reported
        self.started: float | None = None
        self.last_t: float | None = None
        self.epochs_done = 0
        self.best: float | None = None
        self.final: float | None = None
        self.curve: dict[int, float] = {}
        self.steered: list[str] = []
        self.session_started: float | None = None
        self.earlier = 0.0
        """Seconds of the run's earlier sessions (a resumed run): the time it lay stopped is not its duration."""

    def _measured(self, accuracy: float | None) -> None:
        if accuracy is not None:
            self.best = accuracy if self.best is None else max(self.best, accuracy)

    def add(self, e: ev.Event) -> None:
        before, self.last_t = self.last_t, e.t
        if isinstance(e, ev.RunStarted):  # the first start, or a resume into the same run
            if self.session_started is not None and before is not None:
                self.earlier += max(0.0, before - self.session_started)
            self.session_started = e.t
            self.started = e.t if self.started is None else self.started
            self.config = dict(e.config)
            self.status = "running"
            self.epochs_done = e.start_epoch
        elif isinstance(e, ev.EpochEnd):
            self.epochs_done = e.epoch
            self.curve[e.epoch] = 100 * e.test_accuracy
            self.final = e.test_accuracy
            self._measured(e.test_accuracy)
        elif isinstance(e, ev.Evaluation):
            self._measured(e.accuracy)
            if e.reason == "final":
                self.final = e.accuracy
        elif isinstance(e, ev.Steered) and not e.refused:
            self.steered.append(
                f"{BRIEF.get(e.what, e.what)} {shown(e.what, e.new, e.new_extra)} @ step {e.global_step}"
            )
            if e.what == EPOCHS:
                self.config["epochs"] = int(e.new)  # lists show the length the run has now
            elif e.what == EARLY_STOP:  # and the rules it ends on now
                self.config[e.what] = rule_text(e.new, e.new_extra)
            elif e.what == TARGET:
                self.config[e.what] = e.new
        elif isinstance(e, ev.Paused | ev.Resumed):
            self.status = "paused" if isinstance(e, ev.Paused) else "running"
        elif isinstance(e, ev.Finished):
            self.status = "finished" if e.reason == "completed" else "pruned" if e.cause == PRUNED_CAUSE else "stopped"
            self._measured(e.best_accuracy)
            self._measured(e.test_accuracy)
            self.final = e.test_accuracy if e.test_accuracy is not None else self.final
        elif isinstance(e, ev.Failed):
            self.status = "failed"

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "config": self.config, "status": self.status, "started": self.started,
                "last_t": self.last_t, "epochs_done": self.epochs_done, "best_accuracy": self.best,
                "final_accuracy": self.final, "curve": sorted(self.curve.items()), "steered": self.steered,
                "session_started": self.session_started, "earlier": self.earlier}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SummaryFold:
        """A fold that goes on from a saved summary; ValueError/TypeError/KeyError when it is not one."""
        if d.get("version") != 1 or not isinstance(d["config"], dict):
            raise ValueError("not a summary")
        fold = cls()
        fold.config, fold.status = d["config"], str(d["status"])
        fold.started = None if d["started"] is None else float(d["started"])
        fold.last_t = None if d["last_t"] is None else float(d["last_t"])
        fold.epochs_done = int(d["epochs_done"])
        fold.best = None if d["best_accuracy"] is None else float(d["best_accuracy"])
        fold.final = None if d["final_accuracy"] is None else float(d["final_accuracy"])
        fold.curve = {int(epoch): float(acc) for epoch, acc in d["curve"]}
        fold.steered = [str(s) for s in d.get("steered", [])]  # summaries from before steering have none
        # Summaries from before 2026-12-04 kept no sessions: their duration is first start to last event.
        session = d.get("session_started", d["started"])
        fold.session_started = None if session is None else float(session)
        fold.earlier = float(d.get("earlier", 0.0))
        return fold

    def summary(self, run_dir: Path, labels: SummaryCache | None = None) -> RunSummary:
        state = self.status
        if state in ("running", "paused") and not trainer_alive(run_dir):
            state = "stopped"  # the process died without a final report (kill -9, reboot)
        label = read_label(run_dir, labels.read_json if labels else None)
        return RunSummary(
            name=run_dir.name, path=str(run_dir), state=state,
            recipe=str(self.config.get("recipe", "?")), data=str(self.config.get("data", "?")),
            epochs_done=self.epochs_done, epochs=int(self.config.get("epochs", 0)),
            best_accuracy=self.best, started=self.started,
            duration=None if self.session_started is None or self.last_t is None else self.earlier +
            (time.time() if state in ("running", "paused") else self.last_t) - self.session_started,  # live: until now
            final_accuracy=self.final, config=self.config, curve=sorted(self.curve.items()),
            title=label.name, tags=label.tags, notes=label.notes, archived=label.archived, steered=list(self.steered),
        )  # fmt: skip


def load_fold(run_dir: Path, cache: SummaryCache | None = None) -> SummaryFold | None:
    """The run's summary: its summary.json when that is whole, else folded from events.jsonl
    (runs from before summaries, or a summary lost to a full disk). None: no run there."""
    try:
        if cache:  # (a string path: 10,000 runs, 10,000 fewer Paths made)
            return SummaryFold.from_dict(cache.read_json(os.path.join(run_dir, SUMMARY)))
        return SummaryFold.from_dict(json.loads((run_dir / SUMMARY).read_bytes()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        pass
    fold = SummaryFold()
    for event in read_events(run_dir):
        fold.add(event)
    return fold if fold.started is not None else None


class SummaryKeeper:
    """The trainer's side: folds every event it logs and rewrites summary.json (atomically)
    after the ones that change what the runs list shows. Never raises: the summary is a cache
    of events.jsonl, and a summary that could not be written is removed, so that readers fold
    the events instead of trusting a stale one."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.fold = load_fold(run_dir) or SummaryFold()  # a resume goes on from the run's history

    def __call__(self, event: ev.Event) -> None:
        self.fold.add(event)
        if isinstance(event, SUMMARY_EVENTS):
            try:
                atomic_write_json(self.run_dir / SUMMARY, self.fold.to_dict())
            except OSError:
                with contextlib.suppress(OSError):
                    (self.run_dir / SUMMARY).unlink(missing_ok=True)


def summarize(
    run_dir: Path, cache: SummaryCache | None = None, labels: SummaryCache | None = None
) -> RunSummary | None:
    """None when the folder holds no run (no events.jsonl with a run_started). ``cache``, ``labels``:
    the caches to read summary.json and label.json through (engine/run/summary_cache.py)."""
    fold = load_fold(run_dir, cache)
    if fold is None:
        events_file = run_dir / EVENTS
        return damaged(run_dir) if events_file.is_file() and events_file.stat().st_size else None
    return fold.summary(run_dir, labels)


def damaged(run_dir: Path) -> RunSummary:
    """A run whose files cannot be read: listed as such, never hiding the others."""
    return RunSummary(run_dir.name, str(run_dir), "damaged", "?", "?", 0, 0, None, None, None)


def safe_summary(
    run_dir: Path, cache: SummaryCache | None = None, labels: SummaryCache | None = None
) -> RunSummary | None:
    try:
        return summarize(run_dir, cache, labels)
    except Exception:  # one unreadable run (permissions, garbage, a file system error) hides nothing else
        return damaged(run_dir)


def run_folders(root: Path) -> dict[str, str]:
    """The run folders under ``root`` (those with an events.jsonl): their paths as listed, by
    their real paths. The root's links are followed once, a folder's only when it is a link
    itself, and no Path is made: 10,000 runs cost 10,000 ``stat`` calls and little else."""
    try:
        real, listed = os.path.realpath(root), os.fspath(root)
        entries = list(os.scandir(root))
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    for entry in entries:
        if not os.path.isfile(os.path.join(entry.path, EVENTS)):
            continue
        folder = os.path.join(listed, entry.name)
        try:
            key = os.path.realpath(folder, strict=True) if entry.is_symlink() else os.path.join(real, entry.name)
        except (OSError, RuntimeError):  # a dangling link or a loop
            continue
        found.setdefault(key, folder)
    return found


def list_runs(root: Path, cache: SummaryCache | None = None) -> list[RunSummary]:
    """Runs under ``root``, oldest first; unreadable ones as ``damaged``."""
    runs = [safe_summary(Path(folder), cache) for folder in run_folders(root).values()]
    return sorted((r for r in runs if r is not None), key=lambda r: (r.started or 0.0, r.name))


def runs_json(runs: list[RunSummary]) -> str:
    return json.dumps([r.to_dict() for r in runs], indent=2)
