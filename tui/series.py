"""Plot series with a fixed point budget: an hours-long run draws as cheaply as a short one."""

from __future__ import annotations


class Series:
    """(x, y) points; when more than ``budget`` are held, adjacent pairs are averaged.

    Every point then stands for the same number of raw points, so the curve keeps its
    shape at uniform resolution and memory stays flat however long the run.
    """

    def __init__(self, budget: int = 400) -> None:
        self.budget = max(8, budget)
        self.xs: list[float] = []
        self.ys: list[float] = []
        self._weight = 1  # raw points per stored point
        self._acc_x = 0.0
        self._acc_y = 0.0
        self._acc_n = 0
        self.total = 0  # raw points ever added
        self.version = 0  # bumps on every change: a cheap "has it changed" check for the plot

    @property
    def weight(self) -> int:
        """Raw points each stored point stands for."""
        return self._weight

    def __len__(self) -> int:
        return len(self.xs)

    def add(self, x: float, y: float) -> None:
        self.total += 1
        self.version += 1
        self._acc_x += x
        self._acc_y += y
        self._acc_n += 1
        if self._acc_n < self._weight:
            return
        self.xs.append(self._acc_x / self._acc_n)
        self.ys.append(self._acc_y / self._acc_n)
        self._acc_x = self._acc_y = 0.0
        self._acc_n = 0
        if len(self.xs) > self.budget:
            self._halve()

    def _halve(self) -> None:
        n = len(self.xs) // 2 * 2
        xs = [(self.xs[i] + self.xs[i + 1]) / 2 for i in range(0, n, 2)]
        ys = [(self.ys[i] + self.ys[i + 1]) / 2 for i in range(0, n, 2)]
        if n < len(self.xs):  # an odd point out starts the next bucket
            self._acc_x, self._acc_y, self._acc_n = self.xs[-1], self.ys[-1], self._weight
        self.xs, self.ys = xs, ys
        self._weight *= 2

    def points(self) -> tuple[list[float], list[float]]:
        """Stored points plus the partial bucket, so the newest value always shows."""
        if self._acc_n:
            return [*self.xs, self._acc_x / self._acc_n], [*self.ys, self._acc_y / self._acc_n]
        return self.xs, self.ys


def smoothed(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average (debiased at the start, like TensorBoard's smoothing)."""
    out: list[float] = []
    avg, weight = 0.0, 0.0
    for v in values:
        avg = avg * (1 - alpha) + v * alpha
        weight = weight * (1 - alpha) + alpha
        out.append(avg / weight)
    return out
