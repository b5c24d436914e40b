"""The summary fold: what the runs list says of a run, folded from its events in order."""

from __future__ import annotations

from pathlib import Path

from engine.run import events as ev
from engine.run.summary import SummaryFold


def started(epoch: int = 0, t: float = 100.0) -> ev.RunStarted:
    return ev.RunStarted("r", {"recipe": "fast", "data": "demo", "epochs": 3}, "cpu", "", "", "", 1, 10, 10, ["a"], 2,
                         "tensor", "demo", start_epoch=epoch, t=t)  # fmt: skip


def epoch_end(epoch: int, acc: float, t: float) -> ev.EpochEnd:
    return ev.EpochEnd(epoch, 3, 1.0, 0.5, 1.0, acc, 10.0, 1.0, 0.1, 0.01, t=t)


def fold(events: list[ev.Event]) -> SummaryFold:
    f = SummaryFold()
    for e in events:
        f.add(e)
    return f


def test_a_completed_run_keeps_its_best_final_curve_and_time(tmp_path: Path) -> None:
    f = fold([started(), epoch_end(1, 0.4, 110.0), epoch_end(2, 0.6, 120.0), epoch_end(3, 0.5, 130.0),
              ev.Finished("completed", 3, 6, 0.5, 0.6, 30.0, "last.pt", t=131.0)])  # fmt: skip
    s = f.summary(tmp_path / "run")
    assert (s.state, s.epochs_done, s.epochs, s.recipe) == ("finished", 3, 3, "fast")
    assert s.best_accuracy == 0.6 and s.final_accuracy == 0.5
    assert s.curve == [(1, 40.0), (2, 60.0), (3, 50.0)] and s.duration == 31.0


def test_a_resume_into_the_same_run_keeps_its_start_and_its_curve(tmp_path: Path) -> None:
    f = fold([started(), epoch_end(1, 0.4, 110.0), ev.Finished("stopped", 1, 2, 0.4, 0.4, 10.0, "", t=111.0),
              started(epoch=1, t=500.0), epoch_end(2, 0.7, 510.0)])  # fmt: skip
    assert f.started == 100.0 and f.epochs_done == 2 and f.best == 0.7
    assert sorted(f.curve) == [1, 2]


def test_pause_failure_and_a_dead_trainer_show_in_the_state(tmp_path: Path) -> None:
    assert fold([started(), ev.Paused(1)]).status == "paused"
    assert fold([started(), ev.Paused(1), ev.Resumed(1)]).status == "running"
    assert fold([started(), ev.Failed("crash", "x")]).status == "failed"
    # "running" with no trainer behind it (killed, rebooted): the list says stopped.
    assert fold([started()]).summary(tmp_path / "gone").state == "stopped"


def test_the_saved_fold_goes_on_where_it_was() -> None:
    f = fold([started(), epoch_end(1, 0.4, 110.0)])
    again = SummaryFold.from_dict(f.to_dict())
    again.add(epoch_end(2, 0.8, 120.0))
    assert again.best == 0.8 and again.started == 100.0 and sorted(again.curve) == [1, 2]
