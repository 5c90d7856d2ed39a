"""Corpus NLL, the paired bootstrap against random, spread and rank on hand-made per-row numbers."""
import numpy as np
import pytest

from selection.compare import (
    Interval,
    bootstrap_metrics,
    corpus_nll,
    paired_diffs,
    references,
    ranks,
    resample_weights,
    spread,
)


def test_corpus_nll_is_summed_nll_over_summed_tokens():
    sums = np.array([[2.0, 6.0], [1.0, 1.0]])
    tokens = np.array([[1.0, 3.0], [0.0, 0.0]])
    m = corpus_nll(sums, tokens)
    assert m[0] == pytest.approx(8.0 / 4.0) and np.isnan(m[1])


def test_resample_weights_count_each_draw_once_per_row():
    W = resample_weights(7, 50, seed=3)
    assert W.shape == (50, 7) and (W.sum(axis=1) == 7).all() and (W >= 0).all()
    assert np.array_equal(W, resample_weights(7, 50, seed=3))
    assert not np.array_equal(W, resample_weights(7, 50, seed=4))


def test_a_constant_per_token_shift_has_a_zero_width_interval():
    """Paired: an arm that is exactly 0.5 nats/token worse than both random arms on every row differs
    by 0.5 under every resample, however hard the rows are."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 50, size=40).astype(float)
    r1 = rng.uniform(1, 3, size=40) * tokens
    r2 = r1 + 0.2 * tokens  # random arm 2: 0.2 worse per token everywhere
    arm = r1 + 0.6 * tokens  # 0.5 above the random mean (0.1)
    S, T = np.stack([arm, r1, r2]), np.stack([tokens] * 3)
    d = paired_diffs(S, T, random_arms=[1, 2], draws=500)
    assert d[0].diff == pytest.approx(0.5) and d[0].lo == pytest.approx(0.5) and d[0].hi == pytest.approx(0.5)
    assert d[0].verdict == "worse" and d[0].side == 1
    # a random arm is measured against the other random arms (leave-one-out)
    assert d[1].diff == pytest.approx(-0.2) and d[2].diff == pytest.approx(0.2)
    assert d[1].lo == pytest.approx(-0.2) and d[1].hi == pytest.approx(-0.2)


def test_the_interval_matches_a_plain_loop_over_the_same_resamples():
    rng = np.random.default_rng(1)
    n = 25
    tokens = rng.integers(3, 30, size=(3, n)).astype(float)
    sums = rng.uniform(0.5, 2.5, size=(3, n)) * tokens
    draws, seed = 300, 7
    got = paired_diffs(sums, tokens, [1, 2], draws=draws, confidence=0.9, seed=seed)[0]  # arm 0 vs both
    W = resample_weights(n, draws, seed)
    diffs = []
    for b in range(draws):  # the definition, one resample at a time
        idx = np.repeat(np.arange(n), W[b].astype(int))
        m = [sums[a, idx].sum() / tokens[a, idx].sum() for a in range(3)]
        diffs.append(m[0] - (m[1] + m[2]) / 2)
    assert got.lo == pytest.approx(np.quantile(diffs, 0.05)) and got.hi == pytest.approx(np.quantile(diffs, 0.95))
    point = [sums[a].sum() / tokens[a].sum() for a in range(3)]
    assert got.diff == pytest.approx(point[0] - (point[1] + point[2]) / 2)
    assert bootstrap_metrics(sums, tokens, W).shape == (draws, 3)


def test_one_better_row_of_many_gives_a_tie_and_a_clear_shift_gives_better():
    tokens = np.full(200, 10.0)
    rand = np.full(200, 20.0)  # 2 nats/token
    one_row = rand.copy()
    one_row[0] = 10.0  # better on a single row only
    clear = rand - np.linspace(2, 4, 200)  # better on every row
    S, T = np.stack([one_row, clear, rand]), np.stack([tokens] * 3)
    d = paired_diffs(S, T, [2], draws=1000)
    assert d[0].verdict == "within noise" and d[0].lo <= d[0].diff <= d[0].hi <= 0 + 1e-12
    assert d[1].verdict == "better" and d[1].hi < 0
    assert Interval(0.1, -0.2, 0.3, 1).verdict == "within noise" and Interval(0.3, 0.1, 0.5, 1).verdict == "worse"


def test_an_interval_that_excludes_zero_is_not_enough_inside_the_random_arms_spread():
    """Two random arms 0.4 apart (seed noise); an arm 0.1 below their mean on every row has a
    zero-width interval below 0 but lies between them: within noise, not better."""
    tokens = np.full(50, 10.0)
    r1, r2 = np.full(50, 18.0), np.full(50, 22.0)
    arm = np.full(50, 19.0)
    d = paired_diffs(np.stack([arm, r1, r2]), np.stack([tokens] * 3), [1, 2], draws=200)[0]
    assert d.hi < 0 and d.side == 0 and d.verdict == "within noise"


def test_references_leave_a_random_arm_out_of_its_own_reference():
    assert references(4, [1, 2, 3]) == [[1, 2, 3], [2, 3], [1, 3], [1, 2]]
    assert references(2, [1]) == [[1], [1]]


def test_paired_diffs_needs_a_random_arm_and_a_sane_level():
    S = T = np.ones((2, 3))
    with pytest.raises(ValueError, match="random arm"):
        paired_diffs(S, T, [])
    with pytest.raises(ValueError, match="confidence"):
        paired_diffs(S, T, [1], confidence=1.5)


def test_spread_and_ranks():
    s = spread(np.array([1.0, 1.2, 1.1]))
    assert s["mean"] == pytest.approx(1.1) and s["std"] == pytest.approx(0.1) and s["range"] == pytest.approx(0.2)
    assert spread(np.array([2.0]))["std"] is None
    assert ranks(np.array([2.0, 1.0, 2.0, np.nan])).tolist() == [2, 1, 2, 4]
