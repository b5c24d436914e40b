"""The training child process: events stream back, commands go in, it never outlives its owner."""

from __future__ import annotations

import time
from pathlib import Path

from engine.run import events as ev
from engine.session.child import ChildSession
from engine.train.checkpoint import load_checkpoint
from tests.helpers.common import tiny_config


def test_child_streams_events_and_takes_commands(tmp_path: Path) -> None:
    proc = ChildSession(tiny_config(tmp_path, epochs=2))
    proc.start()
    seen: list[ev.Event] = []
    asked = False
    for event in proc.events():
        if event is None:
            continue
        seen.append(event)
        if isinstance(event, ev.Progress) and not asked:
            asked = proc.send("evaluate")
    proc.close()
    kinds = [e.kind for e in seen]
    assert kinds[0] == "status" and "run_started" in kinds and kinds[-1] == "finished"
    assert any(isinstance(e, ev.Evaluation) and e.reason == "request" for e in seen)
    assert not proc.alive()


def test_child_saves_and_stops_when_the_app_side_closes(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, epochs=50)
    proc = ChildSession(cfg)
    proc.start()
    for event in proc.events():
        if isinstance(event, ev.Progress):
            break
    started = time.monotonic()
    proc.close(timeout=30)  # as if the app died: its end of the channel closes
    assert not proc.alive() and time.monotonic() - started < 30
    ckpt = load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.pt")
    assert ckpt["global_step"] >= 1 and ckpt["epoch"] < 50


def test_child_failure_is_reported_not_raised(tmp_path: Path) -> None:
    proc = ChildSession(tiny_config(tmp_path, device="cuda:4096"))  # no such GPU on any machine
    proc.start()
    events = [e for e in proc.events() if e is not None]
    proc.close()
    failed = [e for e in events if isinstance(e, ev.Failed)]
    assert failed and failed[0].error == "config" and "--device cuda:4096" in failed[0].message
