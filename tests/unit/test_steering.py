"""Steering requests as a person types them, as they travel, and the early-stop rules."""

from __future__ import annotations

import pytest

from engine.run import steering as st
from engine.run.controls import Command, Controls, message, steer_in


@pytest.mark.parametrize(
    ("text", "value", "relative"),
    [("0.5", 0.5, False), ("x2", 2.0, False), ("×0.1", 0.1, False), ("*2", 2.0, True), ("/2", 0.5, True)],
)
def test_lr_multiplier_forms(text: str, value: float, relative: bool) -> None:
    act = st.parse_lr_scale(text)
    assert (act.what, act.value, bool(act.extra)) == (st.LR_SCALE, value, relative)


@pytest.mark.parametrize("text", ["", "half", "0", "-1", "1e9", "nan", "inf"])
def test_a_bad_lr_multiplier_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match="LR multiplier") as info:
        st.parse_lr_scale(text)
    assert "\n" not in str(info.value)


def test_epochs_absolute_and_relative() -> None:
    assert st.parse_epochs("30") == st.SteerAct(st.EPOCHS, 30.0, 0.0)
    assert st.parse_epochs("+5").extra == 1.0 and st.parse_epochs("-2").value == -2.0
    for bad in ("0", "2.5", "ten", "1000000"):
        with pytest.raises(ValueError, match="epochs"):
            st.parse_epochs(bad)


def test_early_stop_rule_text() -> None:
    assert st.parse_early_stop_rule("patience=3,min-delta=0.1") == st.EarlyStop(3, 0.1)
    assert st.parse_early_stop_rule("5") == st.EarlyStop(5)
    assert st.parse_early_stop_rule("off") is None and st.parse_early_stop_rule("") is None
    assert str(st.EarlyStop(3, 0.1)) == "patience=3,min-delta=0.1"
    for bad in ("patience=0", "min-delta=1", "patience=x", "wait=3", "patience=3,min-delta=-1"):
        with pytest.raises(ValueError, match="early stop"):
            st.parse_early_stop_rule(bad)


@pytest.mark.parametrize(("text", "fraction"), [("93", 0.93), ("93%", 0.93), ("0.93", 0.93), ("off", 0.0)])
def test_target_accuracy_forms(text: str, fraction: float) -> None:
    assert st.parse_target_value(text) == pytest.approx(fraction)


def test_early_stop_fires_after_patience_epochs_without_a_gain() -> None:
    rule = st.EarlyStop(patience=2, min_delta=0.5)
    assert st.early_stop_cause([0.50, 0.60, 0.603], rule) == ""  # one epoch without a 0.5-point gain
    cause = st.early_stop_cause([0.50, 0.60, 0.603, 0.604], rule)
    assert "2 epochs without a gain over 0.5 points" in cause and "best 60.00% at epoch 2" in cause
    assert st.early_stop_cause([0.5, 0.6, 0.7, 0.8], rule) == ""  # improving: never
    assert st.early_stop_cause([0.5, 0.4, 0.3], None) == ""  # no rule: never


def test_target_fires_once_reached() -> None:
    assert st.target_cause(0.92, 0.93, 4) == ""
    assert st.target_cause(0.931, 0.93, 5) == "target accuracy 93% reached at epoch 5 (93.10%)"
    assert st.target_cause(0.99, 0.0, 5) == ""  # off


def test_an_act_travels_intact_and_a_malformed_one_is_refused() -> None:
    act = st.parse_early_stop("patience=3,min-delta=0.25", source=st.COMMAND_LINE)
    assert steer_in(message(Command.STEER, steer=act)) == act
    assert st.SteerAct.unpacked(act.packed(), source=st.COMMAND_LINE) == act  # as ranks agree on it
    assert st.SteerAct.unpacked(st.NO_ACT, source="") is None
    for bad in ({"what": "momentum", "value": 1}, {"what": "epochs", "value": "30"}, None):
        with pytest.raises(ValueError):
            steer_in({"command": "steer", "steer": bad})


def test_controls_hand_out_one_act_per_boundary_in_order() -> None:
    controls = Controls()
    controls.apply("steer", raw=message("steer", steer=st.parse_lr_scale("*2")))
    controls.apply("steer", raw=message("steer", steer=st.parse_epochs("+1")))
    assert controls.take().steer == st.parse_lr_scale("*2")
    assert controls.take().steer == st.parse_epochs("+1")
    assert controls.take().steer is None
