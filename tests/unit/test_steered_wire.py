"""Steered events carry numbers; the display strings that runs of 2026-12-01 wrote still read,
as the numbers they showed (tests/fixtures/steered-2026-12-01.jsonl, lines as that release wrote them)."""

from __future__ import annotations

from engine.run import events as ev
from engine.run import wire
from engine.run.summary import SummaryFold
from tests.helpers.common import ROOT
from tui.state import RunState

LEGACY = ROOT / "tests" / "fixtures" / "steered-2026-12-01.jsonl"


def legacy_events() -> list[ev.Steered]:
    events = [wire.from_json_line(line) for line in LEGACY.read_text().splitlines()]
    assert all(isinstance(e, ev.Steered) for e in events)
    return events  # type: ignore[return-value]


def test_old_display_strings_read_as_numbers() -> None:
    got = [(e.what, e.old, e.new, e.new_extra) for e in legacy_events()]
    assert got == [("lr_scale", 1.0, 0.5, 0.0), ("epochs", 30.0, 32.0, 0.0), ("early_stop", 0.0, 2.0, 0.5),
                   ("target_accuracy", 0.0, 0.93, 0.0), ("epochs", 32.0, 32.0, 0.0)]  # fmt: skip
    assert legacy_events()[0].message == "LR multiplier x1 -> x0.5 at step 99 (from the dashboard)"
    assert legacy_events()[-1].message.startswith("epochs not changed: cannot end before epoch 2")


def test_the_dashboard_and_the_summary_fold_old_and_new_alike() -> None:
    new = [wire.from_json_line(wire.to_json_line(e)) for e in legacy_events()]
    assert new == legacy_events()  # numbers go through the wire unchanged
    for events in (legacy_events(), new):
        state, fold = RunState(), SummaryFold()
        for event in events:
            state.apply(event)
            fold.add(event)
        assert (state.lr_scale, state.epochs, state.early_stop, state.target_accuracy) == (
            0.5, 32, "patience=2,min-delta=0.5", 0.93)  # fmt: skip
        assert fold.steered[0] == "lr x0.5 @ step 99" and fold.config["target_accuracy"] == 0.93


def test_a_garbled_old_value_is_a_damaged_line_not_a_crash() -> None:
    line = LEGACY.read_text().splitlines()[0].replace('"x0.5"', '"xhalf"')
    assert wire.from_json_line(line) is None
