"""One damaged run never hides the others: runs, export and attach survive corrupt files."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.session.attached import AttachedSession
from engine.train.trainer import Trainer
from tests.helpers.common import ROOT, Recorder, tiny_config
from tui.app import make_app

DAMAGE = {
    "bad-utf8": lambda lines: [lines[0], b"\xff\xfe\xfa not utf-8 \xc3\x28", *lines[1:]],
    "deep-json": lambda lines: [lines[0], b"[" * 200_000, *lines[1:]],
    "wrong-types": lambda lines: [line.replace(b'"epoch":1,', b'"epoch":"one",').replace(b'"test_accuracy":', b'"test_accuracy":"x","_":')
                                  for line in lines],
    "all-garbage": lambda lines: [b"\x00\x01garbage", b"{not json"],
}  # fmt: skip
SUMMARY_DAMAGE = {
    "summary-garbage": b"\x00{not json",
    "summary-types": b'{"version": 1, "config": {}, "status": "running", "started": "x", "last_t": null,'
                     b' "epochs_done": 0, "best_accuracy": null, "final_accuracy": null, "curve": "no"}',
    "summary-list": b"[1, 2, 3]",
}  # fmt: skip


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    Trainer(tiny_config(root, run_dir=str(root / "a-good")), Recorder()).run()
    good = root / "a-good"
    lines = (good / "events.jsonl").read_bytes().splitlines()
    # The copies are about their logs: without the checkpoints (87 MB each) the fixture stays small.
    copytree = functools.partial(shutil.copytree, ignore=shutil.ignore_patterns("*.pt"))
    for name, damage in DAMAGE.items():  # damaged event logs, no summary (as before summaries existed)
        copytree(good, root / name)
        (root / name / "events.jsonl").write_bytes(b"\n".join(damage(lines)) + b"\n")
        (root / name / "summary.json").unlink()
    for name, summary in SUMMARY_DAMAGE.items():  # a damaged summary: the events still tell the run
        copytree(good, root / name)
        (root / name / "summary.json").write_bytes(summary)
    copytree(good, root / "config-list")
    (root / "config-list" / "config.json").write_text("[1, 2, 3]\n")
    for folder in root.iterdir():
        (folder / "trainer.json").unlink(missing_ok=True)
        (folder / ".lock").unlink(missing_ok=True)
    return root


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_runs_lists_every_run_and_marks_the_damaged(runs_root: Path) -> None:
    done = cli("runs", "--runs-root", str(runs_root))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert set(rows) == {"a-good", *DAMAGE, *SUMMARY_DAMAGE, "config-list"}
    assert "finished" in rows["a-good"] and "finished" in rows["bad-utf8"] and "finished" in rows["deep-json"]
    # A damaged summary.json: the run is listed from its events, exactly as the intact one (but
    # for its folder, the last column).
    assert all(rows[name].split()[1:-1] == rows["a-good"].split()[1:-1] for name in SUMMARY_DAMAGE), rows
    assert "damaged" in rows["all-garbage"]
    json_done = cli("runs", "--runs-root", str(runs_root), "--json")
    assert json_done.returncode == 0 and '"damaged"' in json_done.stdout


@pytest.mark.parametrize("name", ["a-good", *DAMAGE, "config-list"])
def test_export_never_crashes(runs_root: Path, name: str, tmp_path: Path) -> None:
    done = cli("export", str(runs_root / name), "--csv", "--out", str(tmp_path))
    assert done.returncode in (0, 2) and "Traceback" not in done.stderr, done.stderr
    if done.returncode == 2:
        assert done.stderr.startswith("cifar-tui: error: ") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("name", [*DAMAGE, "config-list"])
async def test_attach_replays_what_it_can(runs_root: Path, name: str) -> None:
    from tui.subcommands import _run_config

    run = runs_root / name
    app = make_app(_run_config(run), lambda _cfg: AttachedSession(run))
    async with app.run_test(size=(120, 40)) as pilot:
        for i in range(100):
            await pilot.pause(0.05)
            if app.run_state.ended or (name == "all-garbage" and app.events_seen == 0 and i > 20):
                break
        assert app.is_running
        await pilot.press("q")
    assert app.return_code == 0
