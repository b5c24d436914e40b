"""How long finding runs takes with many of them: ``cifar-tui runs`` over N finished runs (each
with its summary.json, label and events, as the trainer leaves them) and resolving one by its
folder name (looked up, nothing listed), by its --name (the label files, cached) and by a part of
its name (every summary, cached). Listing reads a run's summary and label from the per-user
cache (engine/run/summary_cache.py) while their files are unchanged.

    python bench/run_lookup.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from engine.run import events as ev
from engine.run import wire
from engine.run.config import from_recipe
from engine.run.index import remember
from engine.run.label import Label, write_label
from engine.run.rundir import write_mark
from engine.run.summary import SummaryFold


def make_runs(root: Path, count: int) -> list[str]:
    """``count`` finished runs under ``root``; their folder names."""
    config = from_recipe("tutorial", data="demo", epochs=2).to_dict()
    names = []
    for i in range(count):
        folder = root / f"20261204-{i:06d}-tutorial-demo"
        folder.mkdir(parents=True)
        write_mark(folder)
        t = 1_800_000_000.0 + 60 * i
        events = [
            ev.RunStarted(
                str(folder), config, "cpu", "cpu", "2.14", "", 2, 256, 100, ["a", "b"], 8, "tensor", "demo", t=t
            ),
            ev.EpochEnd(1, 2, 1.0, 0.5, 1.0, 0.5, 100.0, 2.0, 0.1, 0.01, t=t + 2),
            ev.Finished("completed", 2, 16, 0.5, 0.5, 4.0, t=t + 4),
        ]
        (folder / "events.jsonl").write_text("".join(wire.to_json_line(e) + "\n" for e in events))
        fold = SummaryFold()
        for event in events:
            fold.add(event)
        (folder / "summary.json").write_text(json.dumps(fold.to_dict()))
        write_label(folder, Label(name=f"trial {i}", tags=["sweep"]))
        remember(folder)  # as the trainer does: the index holds every run too
        names.append(folder.name)
    return names


def timed(label: str, call: object) -> float:
    began = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = call()  # type: ignore[operator]
    seconds = time.perf_counter() - began
    print(f"{label}: {seconds:.3f} s" + (f" (exit {result})" if isinstance(result, int) else ""))
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000)
    args = p.parse_args()
    from engine.run.catalog import resolve_run
    from tui.cli import main as cifar_tui

    work = Path(tempfile.mkdtemp(prefix="cifar-tui-lookup-"))
    os.environ["XDG_STATE_HOME"] = str(work / "state")  # an index of this bench's own
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # and a summaries cache of its own
    os.chdir(work)
    began = time.perf_counter()
    names = make_runs(work / "runs", args.runs)
    print(f"machine: {machine()} | {args.runs:,} runs made in {time.perf_counter() - began:.1f} s")
    list_all = f"cifar-tui runs ({args.runs:,} runs)"
    timed(f"{list_all}, files just written (never cached)", lambda: cifar_tui(["runs"]))
    age(work / "runs", hours=1)  # as runs finished a while ago are
    timed(f"{list_all}, first listing (builds the cache)", lambda: cifar_tui(["runs"]))
    timed(f"{list_all}", lambda: cifar_tui(["runs"]))
    timed(f"cifar-tui runs --json ({args.runs:,} runs)", lambda: cifar_tui(["runs", "--json"]))
    middle = names[len(names) // 2]
    timed("resolve one run by its folder name", lambda: resolve_run(middle))
    timed("resolve one run by its --name (label files, cached)", lambda: resolve_run(f"trial {len(names) // 2}"))
    timed("resolve one run by a part of its name (every summary)", lambda: resolve_run(middle[9:15]))


def age(root: Path, hours: float) -> None:
    """Set every file under ``root`` back ``hours``."""
    then = time.time() - 3600 * hours
    for folder in root.iterdir():
        for file in folder.iterdir():
            os.utime(file, (then, then))


if __name__ == "__main__":
    main()
