"""Which of a study's trials count toward ``--trials``: a trial a stop interrupted, one past the
count, or one Optuna's heartbeat failed and retried is stood in for by another (torch-free)."""

from __future__ import annotations

from typing import Any


def replaced(trials: list[Any]) -> set[int]:
    """Numbers of the trials another trial stands in for: stopped with the sweep (user attribute
    ``interrupted``), past the trial count (``surplus``), or stale and retried by Optuna."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    gone = {t.number for t in trials if t.user_attrs.get("interrupted") or t.user_attrs.get("surplus")}
    for t in trials:
        gone.update(RetryHeartbeatStaleTrialCallback.retry_history(t))
    return gone


def counted(trials: list[Any]) -> list[Any]:
    """The trials that count toward ``--trials``: every one not replaced by another."""
    gone = replaced(trials)
    return [t for t in trials if t.number not in gone]


def finished(trials: list[Any]) -> list[Any]:
    return [t for t in counted(trials) if t.state.is_finished()]
