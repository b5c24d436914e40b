"""The learning-rate finder's rules on synthetic range tests: a clean valley, noise, a NaN, an
early spike and a run that diverges at once (where other finders suggest absurd rates)."""

from __future__ import annotations

import math
import random

import pytest

from engine.run.lr_suggest import smooth, suggest, usable


def range_test(points: int = 100, low: float = 1e-5, high: float = 10.0) -> tuple[list[float], list[float]]:
    """LRs rising exponentially; a loss flat at 2.3, falling from about 1e-3 to a minimum near
    0.1, then exploding: the shape of a real range test."""
    lrs = [low * (high / low) ** (i / (points - 1)) for i in range(points)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        fall = 2.0 / (1 + math.exp(-3 * (x + 2)))  # the drop centred on 1e-2
        blow = math.exp(4 * (x + 0.7)) if x > -0.7 else 0.0  # past 0.2 it diverges
        losses.append(2.3 - fall + blow)
    return lrs, losses


def within(lr: float, low: float, high: float) -> bool:
    return low <= lr <= high


def test_a_clean_valley_gives_rates_on_its_falling_side() -> None:
    s = suggest(*range_test())
    assert s is not None
    assert within(s.valley, 1e-3, 1e-1) and within(s.steepest, 3e-3, 6e-2)  # the average lags: a little late
    assert within(s.minimum_tenth, 5e-3, 5e-2)
    assert max(s.lrs) < 3.0  # cut where the loss passed 4x its best


def test_noise_moves_the_suggestions_little() -> None:
    lrs, losses = range_test()
    rng = random.Random(0)
    noisy = [loss + rng.gauss(0, 0.15) for loss in losses]
    clean, shaken = suggest(lrs, losses), suggest(lrs, noisy)
    assert clean is not None and shaken is not None
    for rule in ("valley", "steepest", "minimum_tenth"):  # still on the falling side, never the first LR tried
        assert within(getattr(shaken, rule), 1e-3, 1e-1), (rule, getattr(shaken, rule))


def test_a_nan_ends_the_record_and_is_never_chosen() -> None:
    lrs, losses = range_test()
    broken = [*losses[:70], math.nan, *losses[71:]]
    s = suggest(lrs, broken)
    assert s is not None and len(s.lrs) <= 70 and all(math.isfinite(v) for v in s.smoothed)
    assert s.valley in lrs[:70] and s.steepest in lrs[:70]


def test_an_early_spike_does_not_make_an_absurd_suggestion() -> None:
    lrs, losses = range_test()
    spiked = [50.0, 30.0, *losses[2:]]
    s = suggest(lrs, spiked)
    assert s is not None and within(s.valley, 1e-4, 1e-1) and within(s.minimum_tenth, 1e-3, 5e-2)


def test_a_run_that_diverges_at_once_suggests_nothing() -> None:
    lrs = [1e-3 * 1.5**i for i in range(50)]
    assert suggest(lrs, [2.3 * 3**i for i in range(50)]) is None
    assert suggest(lrs, [math.nan] * 50) is None


def test_the_smoothing_is_bias_corrected_and_the_cut_is_at_four_times_the_best() -> None:
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards 0 at the start
    lrs = [float(i + 1) for i in range(8)]
    xs, ys = usable(lrs, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 400.0, 400.0])
    assert len(xs) == 6 and max(ys) < 4.0
    with pytest.raises(ValueError):
        suggest([0.0, 1.0], [1.0, 1.0])
