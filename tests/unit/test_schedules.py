"""The learning-rate schedules, step by step: no training, just the multiplier each step gets."""

from __future__ import annotations

import itertools
import math

import pytest

from engine.run.config import from_recipe
from engine.train.schedule import TRIANGULAR_START, LrSchedule, warmup_steps


def factors(schedule: str, epochs: int, steps: int, warmup: float = 0.0) -> list[float]:
    cfg = from_recipe("tutorial", schedule=schedule, epochs=epochs, warmup_epochs=warmup)
    f = LrSchedule(cfg, steps)
    return [f(step) for step in range(epochs * steps)]


def replanned(schedule: str, epochs: int, steps: int, at: int, new_epochs: int, warmup: float = 0.0) -> list[float]:
    """The factor of every step of a run re-planned at step ``at`` to ``new_epochs``."""
    cfg = from_recipe("tutorial", schedule=schedule, epochs=epochs, warmup_epochs=warmup)
    f = LrSchedule(cfg, steps)
    before = [f(step) for step in range(at)]
    f.replan(at, new_epochs)
    return before + [f(step) for step in range(at, new_epochs * steps)]


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


@pytest.mark.parametrize("schedule", ["cosine", "linear", "onecycle", "triangular"])
def test_extending_mid_decay_goes_on_from_where_it_is_and_ends_at_the_new_end(schedule: str) -> None:
    plain = factors(schedule, 4, 10, warmup=1.0)
    f = replanned(schedule, 4, 10, at=25, new_epochs=8, warmup=1.0)
    assert f[:26] == plain[:26]  # the past, and the step it happens at, are untouched: no jump
    assert f[26] > plain[26] and f[26] < f[25]  # the decay slows down over the longer remainder...
    assert f[25:] == sorted(f[25:], reverse=True)  # ...and keeps falling...
    assert f[-1] < 0.02 and len(f) == 80  # ...to near zero at the new end (the old one was step 40)


def test_a_warm_up_that_is_done_stays_done_and_one_under_way_goes_on() -> None:
    done = replanned("onecycle", 4, 10, at=15, new_epochs=8, warmup=1.0)
    assert max(done) == pytest.approx(1.0) and done.index(max(done)) == 9  # one peak, where it was
    assert done[11:] == sorted(done[11:], reverse=True) and done[11] < 1.0
    under_way = replanned("onecycle", 4, 10, at=5, new_epochs=8, warmup=1.0)
    assert under_way[:10] == factors("onecycle", 4, 10, warmup=1.0)[:10]  # the same ramp up
    assert under_way[10] == pytest.approx(1.0) and under_way[10:] == sorted(under_way[10:], reverse=True)


def test_shortening_decays_faster_to_the_new_end() -> None:
    f = replanned("linear", 10, 10, at=30, new_epochs=5)
    assert len(f) == 50 and f[30] == pytest.approx(0.7)
    assert f[-1] == pytest.approx(0.7 / 20)  # one step of the 20 left short of zero, as a run ends
    assert all(a > b for a, b in itertools.pairwise(f[30:]))


def test_re_plans_stack_and_a_rebuilt_schedule_gives_the_same_factors() -> None:
    cfg = from_recipe("tutorial", schedule="cosine", epochs=4, warmup_epochs=1.0)
    live = LrSchedule(cfg, 10)
    live.replan(12, 6)
    live.replan(33, 5)
    rebuilt = LrSchedule(cfg, 10, first_epochs=4, replans=[[12, 6], [33, 5]])
    assert [live(s) for s in range(50)] == [rebuilt(s) for s in range(50)]  # bit for bit: exact resume
    assert live.epochs == rebuilt.epochs == 5


def test_the_multiplier_scales_the_scheduled_value_and_never_replaces_it() -> None:
    cfg = from_recipe("tutorial", schedule="cosine", epochs=2)
    f = LrSchedule(cfg, 10)
    plain = [f(s) for s in range(20)]
    f.scale = 0.5
    assert [f(s) for s in range(20)] == [x * 0.5 for x in plain]  # the decay goes on, halved
    assert set(factors("constant", 2, 10)) == {1.0}
