"""Small text formatters shared by the panes."""

from __future__ import annotations

from engine.run.wording import percent


def pct(x: float | None, digits: int = 1) -> str:
    """A pane's percent: one digit, '--' when not measured (engine.run.wording.percent)."""
    return percent(x, digits, missing="--")


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"
