"""Controls: what a key or a signal asks of the trainer, taken at the next batch boundary."""

from __future__ import annotations

import threading

import pytest

from engine.run.controls import (
    COMMANDS,
    STOPPED_FROM_A_DASHBOARD,
    Command,
    Controls,
    cause_in,
    command_in,
    message,
)


def test_one_shot_requests_are_taken_once_and_a_stop_stays() -> None:
    c = Controls()
    c.apply(Command.SAVE)
    c.apply("evaluate")
    first = c.take()
    assert first.save and first.evaluate and not first.stop
    again = c.take()
    assert not again.save and not again.evaluate
    c.apply(Command.STOP_SAVE)
    assert c.take().stop and c.take().stop and c.take().save_on_stop  # a stop is never forgotten
    assert c.stop_cause == STOPPED_FROM_A_DASHBOARD


def test_pause_toggles_and_a_stop_unpauses() -> None:
    c = Controls()
    c.apply(Command.TOGGLE_PAUSE)
    assert c.paused
    c.apply(Command.TOGGLE_PAUSE)
    assert not c.paused
    c.apply(Command.PAUSE)
    c.stop(save=True, cause="SIGTERM")
    assert not c.paused and c.stop_cause == "SIGTERM"
    c.stop(cause="second")
    assert c.stops == 2 and c.stop_cause == "SIGTERM"  # the first cause is the run's


def test_a_paused_trainer_wakes_for_a_stop_from_another_thread() -> None:
    c = Controls()
    c.apply(Command.PAUSE)
    woke = threading.Event()

    def trainer() -> None:
        while c.wait_while_paused(5.0):
            pass
        woke.set()

    thread = threading.Thread(target=trainer)
    thread.start()
    c.apply(Command.STOP)
    thread.join(10)
    assert woke.is_set() and c.take().stop


def test_every_command_travels_as_one_message_and_back() -> None:
    for name in COMMANDS:
        assert command_in(message(name)) == name and cause_in(message(name)) == ""
    said = message(Command.STOP_SAVE, "terminal hung up")
    assert command_in(said) == "stop_save" and cause_in(said) == "terminal hung up"
    c = Controls()
    c.apply(command_in(said) or "", cause_in(said))
    assert c.stop_cause == "terminal hung up"
    assert command_in({"command": 3}) is None and command_in(["pause"]) is None
    with pytest.raises(ValueError):
        message("reboot")
    with pytest.raises(ValueError):
        Controls().apply("reboot")
