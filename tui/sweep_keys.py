"""What the sweep screen's keys do to a trial: its run's control socket, as ``cifar-tui pause``
and ``cifar-tui stop`` use it. The sweep sees the run end and records why: a trial pruned here
is ``pruned`` as if Optuna had pruned it; one stopped here is failed, "stopped from the sweep
screen", and the sweep goes on with the next."""

from __future__ import annotations

from pathlib import Path

from engine.run.controls import PRUNED_CAUSE, STOPPED_FROM_SWEEP, Command
from engine.run.summary import safe_summary
from tui.run_commands import _send


def act_on_trial(run_dir: Path, what: str) -> tuple[str, bool]:
    """``pause`` (or resume a paused run), ``prune`` or ``stop`` the trial's run: what was asked,
    in words, and whether the trainer took it."""
    if what == "pause":
        summary = safe_summary(run_dir)
        paused = summary is not None and summary.state == "paused"
        command, cause, said = (Command.RESUME, "", "resume") if paused else (Command.PAUSE, "", "pause")
    elif what == "prune":
        command, cause, said = Command.STOP_SAVE, PRUNED_CAUSE, "prune (save and stop)"
    else:
        command, cause, said = Command.STOP_SAVE, STOPPED_FROM_SWEEP, "stop (save)"
    answer = _send(run_dir, [(command, cause, None)])
    if isinstance(answer, str):
        return answer, False
    return f"{said}: asked; it acts at the next batch", True
