"""Listing runs through the per-user summaries cache: what a listing shows is always what the
run folders hold now, however the cache stands."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from bench.run_lookup import make_runs
from engine.run.catalog import NoSuchRun, find_runs, resolve_run
from engine.run.label import LABEL, Label, write_label
from engine.run.summary_cache import LABELS, SUMMARIES, cache_path


def age(folder: Path, hours: float = 1.0) -> None:
    """Set the run's files back, as those of a run that finished a while ago are."""
    then = time.time() - 3600 * hours
    for file in folder.iterdir():
        os.utime(file, (then, then))


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.chdir(tmp_path)
    folders = [tmp_path / "runs" / name for name in make_runs(tmp_path / "runs", 3)]
    for folder in folders:
        age(folder)
    return folders


def titles() -> list[str]:
    return [r.title for r in find_runs()]


def test_an_unchanged_run_is_listed_from_the_cache_and_a_changed_one_from_its_folder(runs: list[Path]) -> None:
    assert titles() == ["trial 0", "trial 1", "trial 2"]
    cached = json.loads(cache_path(SUMMARIES).read_text())["files"]
    assert sorted(cached) == sorted(str(f.resolve() / "summary.json") for f in runs)
    # The same bytes' length, the same inode and time: the cache's copy is what is listed. (Shows
    # the cache is read; no tool rewrites a file in place like this.)
    label = runs[1] / LABEL
    stat = label.stat()
    original = label.read_bytes()
    label.write_bytes(original.replace(b"trial 1", b"TRIAL 9"))
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert titles() == ["trial 0", "trial 1", "trial 2"]
    # Any real change (a new label written, then or a while ago) is seen at once.
    write_label(runs[1], Label(name="renamed"))
    assert titles() == ["trial 0", "renamed", "trial 2"]
    age(runs[1], hours=2)
    assert titles() == ["trial 0", "renamed", "trial 2"]
    assert resolve_run("renamed") == runs[1].relative_to(runs[1].parents[1])
    with pytest.raises(NoSuchRun):
        resolve_run("trial 1")


def test_a_damaged_cache_or_none_lists_the_same(runs: list[Path]) -> None:
    first = [r.to_dict() for r in find_runs()]
    for kind in (SUMMARIES, LABELS):
        cache_path(kind).write_bytes(b'{"version": 1, "base": 5, "files": {"x": [1, 2]}}')
    assert [r.to_dict() for r in find_runs()] == first
    assert json.loads(cache_path(SUMMARIES).read_text())["files"]  # written anew, whole
    for kind in (SUMMARIES, LABELS):
        cache_path(kind).write_bytes(b"\x00garbage")
    assert [r.to_dict() for r in find_runs()] == first
    shutil.rmtree(cache_path(SUMMARIES).parent)
    assert [r.to_dict() for r in find_runs()] == first


def test_a_run_just_written_is_never_cached_and_a_deleted_one_leaves_the_cache(runs: list[Path]) -> None:
    write_label(runs[0], Label(name="fresh"))  # a file of this very moment
    assert titles() == ["fresh", "trial 1", "trial 2"]
    assert str(runs[0].resolve() / LABEL) not in json.loads(cache_path(LABELS).read_text())["files"]
    shutil.rmtree(runs[2])
    assert titles() == ["fresh", "trial 1"]
    cached = json.loads(cache_path(SUMMARIES).read_text())["files"]
    assert not any(key.startswith(str(runs[2].resolve())) for key in cached)
