"""SemDeDup: planted near-copies are removed, nothing else; the earliest row of a group is kept."""
import numpy as np
import pytest

from selection import semdedup as sd
from selection.semdedup import DedupParams, greedy_keep, semdedup, similar_pairs, unit_rows


def planted(n=600, d=32, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, d)).astype(np.float32)
    copies = {50: 7, 333: 7, 120: 90, 599: 400}  # near-copy -> the row it copies
    for c, src in copies.items():
        E[c] = E[src] * 1.3 + 0.02 * rng.normal(size=d)
    return E, copies


def test_planted_near_copies_and_nothing_else():
    E, copies = planted()
    res = semdedup(E, np.ones(len(E), bool), DedupParams(threshold=0.95, clusters=6))
    assert sorted(np.flatnonzero(res.removed)) == sorted(copies)
    for c, src in copies.items():
        assert res.duplicate_of[c] == src and res.similarity[c] >= 0.95
    assert np.isnan(res.similarity[~res.removed]).all() and (res.cluster >= 0).all()


def test_earliest_row_is_kept_even_when_the_copy_comes_first_in_the_file():
    E, _ = planted()
    E[10] = E[500] + 1e-4  # the copy sits *before* its source: the earlier row is kept
    res = semdedup(E, np.ones(len(E), bool), DedupParams(threshold=0.95, clusters=1))
    assert res.duplicate_of[500] == 10 and res.duplicate_of[10] == -1


def test_chain_keeps_rows_not_similar_to_a_kept_row():
    # a ~ b ~ c with a !~ c: b is dropped as a copy of a; c is compared with *kept* rows only (a), so it stays
    a = np.array([1.0, 0.0, 0.0], np.float32)
    b = np.array([np.cos(0.3), np.sin(0.3), 0], np.float32)
    c = np.array([np.cos(0.6), np.sin(0.6), 0], np.float32)
    i, j, s = similar_pairs(unit_rows(np.stack([a, b, c]), False), float(np.cos(0.35)))
    dup, _ = greedy_keep(3, i, j, s)
    assert dup.tolist() == [-1, 0, -1]


def test_errors_and_zero_vectors_take_no_part():
    E, copies = planted()
    eligible = np.ones(len(E), bool)
    eligible[7] = False  # the source of two copies has an error: they now copy nothing kept, except each other
    res = semdedup(E, eligible, DedupParams(threshold=0.95, clusters=1))
    assert res.duplicate_of[7] == -1 and res.cluster[7] == -1
    assert res.duplicate_of[333] == 50 and res.duplicate_of[50] == -1


def test_blocked_pairs_equal_the_whole_matrix(monkeypatch):
    E, _ = planted()
    X = unit_rows(E[:300], True)
    full = similar_pairs(X, 0.3)
    monkeypatch.setattr(sd, "BLOCK_ELEMENTS", 7 * 300)  # 7-row blocks
    blocked = similar_pairs(X, 0.3)
    np.testing.assert_array_equal(full[0], blocked[0])
    np.testing.assert_array_equal(full[1], blocked[1])
    np.testing.assert_allclose(full[2], blocked[2], rtol=1e-5)  # BLAS sums in another shape


def test_centring_removes_the_shared_direction():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(200, 16)).astype(np.float32) + 20.0  # a large common offset, as LM hidden states have
    raw = semdedup(E, np.ones(200, bool), DedupParams(threshold=0.95, clusters=1, center=False))
    centred = semdedup(E, np.ones(200, bool), DedupParams(threshold=0.95, clusters=1, center=True))
    assert raw.removed.sum() > 150 and centred.removed.sum() == 0


@pytest.mark.parametrize("t", [0, -0.1, 1.01, 2])
def test_threshold_outside_0_1_is_refused(t):
    with pytest.raises(ValueError, match=r"dedup.threshold must be in \(0, 1\]"):
        DedupParams(threshold=t).check()
