"""Finding runs: under a runs folder, and anywhere the per-user index (engine/run/index.py)
knows of; naming one on a command line by its path, its folder name or its label's name."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.run.index import indexed_paths, resolved
from engine.run.index import named as index_named
from engine.run.label import LABEL, label_from
from engine.run.rundir import EVENTS
from engine.run.summary import RunSummary, run_folders, safe_summary
from engine.run.summary_cache import LABELS, SUMMARIES, SummaryCache

DEFAULT_ROOT = Path("runs")


def find_runs(roots: list[Path] | None = None, also: tuple[Path, ...] = ()) -> list[RunSummary]:
    """Runs under ``roots`` only; or, by default, under ./runs and ``also`` and every run in the
    index. Each once, oldest first. Archived runs are included: the caller decides whether to show them."""
    cache, labels = SummaryCache(SUMMARIES), SummaryCache(LABELS)
    folders = _run_folders(roots, also)
    runs = [summary for folder in folders.values() if (summary := safe_summary(Path(folder), cache, labels))]
    for kept in (cache, labels):
        kept.save(prune=roots is None)  # a whole listing: runs no longer there leave the cache
    return sorted(runs, key=lambda r: (r.started or 0.0, r.name))


def _run_folders(roots: list[Path] | None, also: tuple[Path, ...] = ()) -> dict[str, str]:
    """The run folders under ``roots`` only; or under ./runs, ``also`` and in the index: each once,
    by its real path (nothing in them read)."""
    folders: dict[str, str] = {}
    for root in roots if roots is not None else [DEFAULT_ROOT, *also]:
        for key, folder in run_folders(root).items():
            folders.setdefault(key, folder)
    for path in indexed_paths() if roots is None else []:
        # The index holds resolved paths: most are found as they are, unresolved.
        if path in folders or not os.path.isfile(os.path.join(path, EVENTS)):
            continue
        if (real := resolved(Path(path))) is not None:
            folders.setdefault(str(real), path)
    return folders


RUN_ORDERS: dict[str, Callable[[RunSummary], Any]] = {
    "started": lambda r: r.started or 0.0,
    "best": lambda r: r.best_accuracy,
    "name": lambda r: r.title.lower(),
    "duration": lambda r: r.duration or 0.0,
    "state": lambda r: r.state,
}
"""The orders runs are listed in (``runs --sort``, the runs screen's ``o``), each ascending; a
run without the value (no accuracy yet) has None."""


def sort_runs(runs: list[RunSummary], by: str, *, reverse: bool = False) -> list[RunSummary]:
    """``runs`` in the order ``by`` (a key of :data:`RUN_ORDERS`), those without a value last
    either way; equal ones keep their order."""
    key = RUN_ORDERS[by]
    have = [r for r in runs if key(r) is not None]
    return sorted(have, key=key, reverse=reverse) + [r for r in runs if key(r) is None]


class NoSuchRun(ValueError):
    """A RUN argument that names no run, or more than one (the message says which)."""


def looks_like_path(text: str) -> bool:
    """Whether a RUN argument is a path (it has a separator, or is ``.``, ``..`` or ``~...``): a
    path names the folder it points to and never matches a run's name."""
    return "/" in text or text in (".", "..") or text.startswith("~")


def _named_exactly(text: str, roots: list[Path] | None) -> list[Path]:
    """Runs whose folder name is exactly ``text``, else whose --name is: from the folders and the
    label files alone (cached), no run's summary read (the common case, fast over thousands of runs)."""
    # A folder name: looked up where it would be, not listed.
    named = [root / text for root in (roots if roots is not None else [DEFAULT_ROOT])]
    named += [Path(p) for p in (indexed_paths() if roots is None else []) if os.path.basename(p) == text]
    if any((folder / EVENTS).is_file() for folder in named):
        runs = {key: folder for folder in named if (folder / EVENTS).is_file() and (key := resolved(folder))}
        return list(runs.values())
    labels = SummaryCache(LABELS)
    # The names the index recorded with each label written here: checked against the label itself
    # (a stale entry is passed over). Only when none holds does every run's label get read.
    wanted = {str(root.resolve()) for root in roots} if roots is not None else None
    recorded = [Path(p) for p in index_named(text) if wanted is None or str(Path(p).parent) in wanted]
    named = [p for p in recorded if (p / EVENTS).is_file() and _label_name(str(p), labels) == text]
    if named:  # as a listing names them: under a runs folder given (or ./runs), by that folder
        listed = {resolved(root): root for root in (roots if roots is not None else [DEFAULT_ROOT])}
        return [listed[p.parent] / p.name if p.parent in listed else p for p in named]
    named = [Path(folder) for folder in _run_folders(roots).values() if _label_name(folder, labels) == text]
    labels.save()
    return named


def _label_name(folder: str, labels: SummaryCache) -> str:
    """The run's --name from its label.json (through the cache); "" when it has none."""
    try:
        return label_from(labels.read_json(os.path.join(folder, LABEL))).name
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return ""


def resolve_run(text: str, roots: list[Path] | None = None) -> Path:
    """The run directory ``text`` names: a path to one, or a folder name or label name of a known
    run (exact, else a unique part of it). NoSuchRun with a one-line reason otherwise."""
    if not text.strip():
        raise NoSuchRun("a run's name cannot be empty (leave RUN out for the one live run)")
    path = Path(text).expanduser()
    if looks_like_path(text):
        if (path / EVENTS).is_file():
            return path
        raise NoSuchRun(f"{text} holds no run (no {EVENTS})" if path.exists() else f"no run at {text}")
    if (path / EVENTS).is_file():  # a folder name in the current folder
        return path
    named = _named_exactly(text, roots)
    if len(named) == 1:
        return named[0]
    runs = find_runs(roots)
    for exact in ([r for r in runs if text in (r.name, r.title)],
                  [r for r in runs if text.lower() in r.name.lower() or text.lower() in r.title.lower()]):  # fmt: skip
        if len(exact) == 1:
            return Path(exact[0].path)
        if len(exact) > 1:
            names = ", ".join(r.name for r in exact[:5]) + (" ..." if len(exact) > 5 else "")
            raise NoSuchRun(f"{text!r} names {len(exact)} runs ({names}); give more of the name or the path")
    if path.exists():
        raise NoSuchRun(f"{text} holds no run (no {EVENTS})")
    raise NoSuchRun(f"no run called {text!r} (cifar-tui runs lists them)")


def live_runs(roots: list[Path] | None = None) -> list[RunSummary]:
    return [r for r in find_runs(roots) if r.state in ("running", "paused")]


def choose_run(text: str | None, roots: list[Path] | None = None, *, live_only: bool = False,
               ask: Callable[[list[RunSummary]], RunSummary | None] | None = None) -> Path:  # fmt: skip
    """The run a command is about: the one ``text`` names; without a name, the one live run (or
    ``ask`` which, when several are live), else the newest run (unless ``live_only``).
    NoSuchRun with a one-line reason when there is none to take."""
    if text is not None:
        return resolve_run(text, roots)
    runs = find_runs(roots)
    live = [r for r in runs if r.state in ("running", "paused")]
    if len(live) == 1:
        return Path(live[0].path)
    if len(live) > 1:
        chosen = ask(live) if ask is not None else None
        if chosen is None:
            names = ", ".join(r.title for r in live[:5]) + (" ..." if len(live) > 5 else "")
            raise NoSuchRun(f"{len(live)} runs are live ({names}); name one")
        return Path(chosen.path)
    if live_only:
        raise NoSuchRun("no live run (cifar-tui runs lists them all)")
    if not runs:
        where = f"under {roots[0]}/" if roots else "in ./runs or in the index of runs you started"
        raise NoSuchRun(f"no runs {where} (start one, or give a run directory)")
    return Path(runs[-1].path)
