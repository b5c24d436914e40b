"""Small text formatters shared by the panes."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def pct(x: float | None, digits: int = 1) -> str:
    return "--" if x is None else f"{100 * x:.{digits}f}%"


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"
