"""Small text formatters shared by the panes."""

from __future__ import annotations


def pct(x: float | None, digits: int = 1) -> str:
    return "--" if x is None else f"{100 * x:.{digits}f}%"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"
