"""Checkpoint-selection check: half-split picking is scored on unseen halves, the bootstrap brackets the gain."""

from __future__ import annotations

import random

import pytest
from reviewsum_build import selection


def test_a_checkpoint_better_on_every_review_is_always_picked_and_scored_at_its_level():
    scores = {"weak": [40.0] * 20, "strong": [60.0] * 20}
    estimate, picks = selection.half_split_selection(scores, halvings=50)
    assert picks == {"strong": 100}
    assert estimate == pytest.approx(60.0)


def test_picking_among_equal_noisy_checkpoints_gains_nothing_on_the_held_out_half():
    rng = random.Random(1)
    # ten checkpoints of the same true quality (50) with independent per-review noise
    scores = {f"c{k}": [50 + rng.gauss(0, 10) for _ in range(200)] for k in range(10)}
    best_full = max(sum(v) / len(v) for v in scores.values())
    estimate, picks = selection.half_split_selection(scores, halvings=100)
    assert best_full > 50.8  # the best of ten looks better than it is on the data it was picked on
    assert estimate == pytest.approx(50.0, abs=0.8)  # but not on the other half
    assert estimate < best_full
    assert sum(picks.values()) == 200 and len(picks) > 1


def test_paired_bootstrap_of_a_constant_gain_is_that_gain():
    gain, low, high = selection.paired_bootstrap([55.0, 61.0, 70.0], [53.0, 59.0, 68.0], resamples=200)
    assert (gain, low, high) == pytest.approx((2.0, 2.0, 2.0))


def test_paired_bootstrap_interval_contains_the_mean_and_widens_with_noise():
    rng = random.Random(2)
    base = [rng.uniform(30, 70) for _ in range(300)]
    small = [b + 1 + rng.gauss(0, 1) for b in base]
    large = [b + 1 + rng.gauss(0, 10) for b in base]
    gain_s, low_s, high_s = selection.paired_bootstrap(small, base, resamples=1000)
    gain_l, low_l, high_l = selection.paired_bootstrap(large, base, resamples=1000)
    assert low_s < gain_s < high_s and low_l < gain_l < high_l
    assert low_s > 0 and high_s - low_s < high_l - low_l


def test_fewer_than_two_checkpoints_are_refused(capsys):
    with pytest.raises(SystemExit):
        selection.parse_args(["runs/only_one"])
    assert "at least two checkpoints" in capsys.readouterr().err
