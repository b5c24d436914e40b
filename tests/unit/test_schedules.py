"""The learning-rate schedules, step by step: no training, just the multiplier each step gets."""

from __future__ import annotations

import math

import pytest

from engine.run.config import from_recipe
from engine.train.optim import TRIANGULAR_START, lr_factor, warmup_steps


def factors(schedule: str, epochs: int, steps: int, warmup: float = 0.0) -> list[float]:
    cfg = from_recipe("tutorial", schedule=schedule, epochs=epochs, warmup_epochs=warmup)
    f = lr_factor(cfg, steps)
    return [f(step) for step in range(epochs * steps)]


def test_constant_is_the_seeds_one_rate_throughout() -> None:
    assert set(factors("constant", 3, 10, warmup=1.0)) == {1.0}


def test_a_warmup_longer_than_half_the_run_is_capped_at_half() -> None:
    cfg = from_recipe("tutorial", schedule="cosine", epochs=2, warmup_epochs=5.0)
    assert warmup_steps(cfg, 10) == 10  # 20 steps in all: half of them
    f = factors("cosine", 2, 10, warmup=5.0)
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 9  # the peak ends the capped warm-up
    assert f[-1] < 0.05  # and a decay is left


def test_triangular_starts_at_a_fifth_rises_to_the_peak_then_falls_to_zero() -> None:
    f = factors("triangular", 10, 10, warmup=2.0)
    assert f[0] == pytest.approx(TRIANGULAR_START)
    assert f[:20] == sorted(f[:20]) and f[19] < 1.0 and f[20] == pytest.approx(1.0)
    assert f[20:] == sorted(f[20:], reverse=True)
    assert f[-1] == pytest.approx(1.0 / 80, abs=1e-9)  # one step short of zero at the last step


def test_linear_warms_up_from_near_zero() -> None:
    f = factors("linear", 4, 10, warmup=1.0)
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(0.0 <= x <= 1.0 for x in f)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_cosine_decays_smoothly_to_zero(schedule: str) -> None:
    f = factors(schedule, 5, 20, warmup=1.0)
    after = f[20:]
    assert after == sorted(after, reverse=True)
    assert f[20] == pytest.approx(1.0) and after[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 79 / 80)))
