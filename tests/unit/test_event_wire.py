"""Events round-trip through events.jsonl's JSON lines unchanged, and a damaged line is no event."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from engine.run import events as ev
from engine.run import wire

SAMPLES: list[ev.Event] = [
    ev.Status(ev.Phase.PAUSED, "paused at step 3", t=1.0),
    ev.Log("hello", level="warning", t=2.0),
    ev.RunStarted(
        "runs/x",
        {"lr": 0.1, "explicit": ["lr"]},
        "cpu",
        "CPU",
        "2.14",
        "",
        2,
        100,
        10,
        ["a", "b"],
        4,
        "tensor",
        "demo",
        gpu_uuids=["u"],
        pids=[1, 2],
        t=3.0,
    ),
    ev.Progress(0, 2, 3, 4, 3, 1.5, 0.01, 100.0, 0.1, 2.0, interval_loss=1.4, t=4.0),
    ev.Evaluation(0, 4, 4, 1.2, 0.5, [0.5, 0.5], [[1, 1], [1, 1]], ["a", "b"], 0.3, reason="final", t=5.0),
    ev.EpochEnd(1, 2, 1.3, 0.4, 1.2, 0.5, 90.0, 1.0, 0.2, 0.01, t=6.0),
    ev.CheckpointSaved("runs/x/checkpoints/last.pt", 1, 0, 4, "epoch", t=7.0),
    ev.Paused(3, t=8.0),
    ev.Resumed(3, t=9.0),
    ev.Steered(5, 1, "early_stop", 0.0, 3.0, "command line", new_extra=0.5, request="r1", t=9.5),
    ev.LrFound([1e-7, 1e-6], [2.3, 2.2], [2.3, 2.25], None, None, None, 0.001, 1.5, t=9.6),
    ev.Finished("completed", 2, 8, 0.5, 0.6, 12.0, "last.pt", t=10.0),
    ev.Failed("crash", "boom", "Traceback", "data", t=11.0),
    ev.Detached(123, "runs/x/output.log", t=12.0),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_every_kind_round_trips_through_a_json_line(event: ev.Event) -> None:
    back = wire.from_json_line(wire.to_json_line(event))
    assert back == event
    assert {f.name for f in fields(back)} == {f.name for f in fields(event)}


def test_every_event_kind_is_sampled() -> None:
    assert {e.kind for e in SAMPLES} == set(wire.EVENT_TYPES)


def test_a_phase_is_a_plain_string_on_the_wire() -> None:
    line = wire.to_json_line(ev.Status(ev.Phase.WAITING_FOR_ROOM, t=1.0))
    assert '"state":"waiting_for_room"' in line
    assert wire.from_json_line(line) == ev.Status("waiting_for_room", t=1.0)


def test_a_nan_is_written_as_null_and_read_back_as_no_event_rather_than_a_wrong_one() -> None:
    line = wire.to_json_line(ev.Progress(0, 1, 1, 1, 1, math.nan, 0.1, 1.0, 0.0, 1.0, t=1.0))
    assert "NaN" not in line and '"loss":null' in line
    assert wire.from_json_line(line) is None  # a required float missing: skipped, never a crash


@pytest.mark.parametrize("line", [b"", b"{", b"\xff\xfe", b"[1, 2]", b'{"kind": "nope"}', b"[" * 100_000,
                                  b'{"kind": "log", "message": 3}'])  # fmt: skip
def test_a_damaged_line_is_no_event(line: bytes) -> None:
    assert wire.from_json_line(line) is None


def test_fields_a_newer_version_adds_are_dropped() -> None:
    line = wire.to_json_line(ev.Log("x", t=1.0)).replace("}", ',"future":1}')
    assert wire.from_json_line(line) == ev.Log("x", t=1.0)
