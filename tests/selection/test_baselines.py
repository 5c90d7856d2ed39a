"""Random and longest baselines, and the arm comparison every report shows."""
import numpy as np
import pytest

from selection.baselines import baseline_subset, compare_arms, longest_subset, overlap, random_subset


def test_random_is_reproducible_per_seed_and_eligible_only():
    eligible = np.ones(1000, bool)
    eligible[::3] = False
    a, b = random_subset(eligible, 50, 7), random_subset(eligible, 50, 7)
    assert np.array_equal(a, b) and len(np.unique(a)) == 50
    assert eligible[a].all() and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, random_subset(eligible, 50, 8))
    assert len(random_subset(eligible, 10_000, 0)) == eligible.sum()  # capped at what is eligible


def test_longest_picks_the_longest_with_ties_by_position():
    lengths = np.array([5, 9, 9, 1, 30, 9, 2])
    eligible = np.array([1, 1, 1, 1, 0, 1, 1], bool)  # the 30-token row has an error
    assert longest_subset(lengths, eligible, 3).tolist() == [1, 2, 5]
    assert longest_subset(lengths, eligible, 4).tolist() == [1, 2, 5, 0]
    with pytest.raises(ValueError, match="random, longest"):
        baseline_subset("shortest", lengths, eligible, 2, 0)


def test_compare_arms_figures():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, 400)
    score = rng.normal(size=400)
    emb = rng.normal(size=(400, 8)).astype(np.float32)
    clusters = rng.integers(0, 5, 400)
    eligible = np.ones(400, bool)
    longest = longest_subset(lengths, eligible, 40)
    arms = {"m": np.argsort(-score)[:40], "random": random_subset(eligible, 40, 0), "longest": longest}
    stats = compare_arms(arms, lengths, eligible, score, emb, clusters)
    assert stats["longest"]["overlap_with_longest"] == 1.0
    assert stats["longest"]["response_tokens"]["mean"] == pytest.approx(lengths[longest].mean())
    assert stats["m"]["score"]["mean"] > stats["random"]["score"]["mean"]
    for arm in stats.values():
        assert arm["rows"] == 40 and 0 < arm["cluster_entropy"] <= 1 and arm["kcenter_radius"] > 0
    # the whole pool as a subset covers itself: radius 0, and a single cluster spreads nothing
    everything = compare_arms({"all": np.arange(400)}, lengths, eligible, emb=emb, clusters=np.zeros(400, int))
    assert everything["all"]["kcenter_radius"] == 0 and everything["all"]["cluster_entropy"] is None
    assert overlap(np.array([1, 2, 3, 4]), np.array([2, 4, 9])) == 0.5 and overlap(np.array([]), arms["m"]) is None
