import numpy as np
import pytest

from selection.coverage import coverage_report
from selection.diversity import sliding_window_diverse, threshold_diversity
from selection.facility import facility_location, facility_location_dense
from selection.fusion import fuse_ranks, ranks
from selection.kmeans import allocate_proportional, cherry_cluster_picks, kmeans


@pytest.mark.parametrize("sizes,budget", [([10, 20, 30], 7), ([1, 1, 1], 2), ([5, 0, 5], 10),
                                          ([100, 3, 7, 41], 50), ([3, 3, 3], 100)])
def test_allocation_sums_exactly_and_respects_sizes(sizes, budget):
    q = allocate_proportional(sizes, budget)
    assert q.sum() == min(budget, sum(sizes)) and np.all(q <= sizes)


def test_allocation_largest_remainder():
    assert allocate_proportional([10, 20, 30], 7).tolist() == [1, 2, 4]  # 1.17, 2.33, 3.5 -> 3.5 rounds up


def test_cherry_band_picks_hand_example():
    clusters = np.array([0] * 20 + [1] * 5)
    scores = np.concatenate([np.arange(20, dtype=float), np.ones(5)])
    picks = cherry_cluster_picks(scores, clusters, n=4, low=25, high=75)
    # cluster 0: band = scores in [4.75, 14.25] -> rows 5..14 (10 rows), step 10//4 = 2 -> 5,7,9,11
    # cluster 1: 5 rows >= n=4, all equal -> band = all 5, step 1 -> first 4
    assert picks.tolist() == [5, 7, 9, 11, 20, 21, 22, 23]
    small = cherry_cluster_picks(scores, clusters, n=10)
    assert set(range(20, 25)) <= set(small.tolist())  # cluster smaller than n: all of it


def test_kmeans_separates_blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(50, 4)) + 20, rng.normal(size=(50, 4)) - 20]).astype(np.float32)
    C, a = kmeans(X, 2, seed=0)
    assert C.shape == (2, 4) and len(set(a[:50])) == 1 and len(set(a[50:])) == 1 and a[0] != a[99]


def test_threshold_diversity_skips_near_duplicates():
    X = np.array([[1, 0], [0.999, 0.01], [0, 1], [0.7, 0.7], [-1, 0]], dtype=np.float32)
    got = threshold_diversity(np.arange(5), X, k=10, tau=0.9, block=2)
    assert got.tolist() == [0, 2, 3, 4]  # row 1 has cos 0.9999 with row 0; row 3 has 0.707 with 0 and 2
    assert threshold_diversity(np.arange(5), X, k=10, tau=0.7).tolist() == [0, 2, 4]
    assert threshold_diversity(np.arange(1, 5), X, k=10, tau=0.9, admitted=[0]).tolist() == [2, 3, 4]
    assert threshold_diversity(np.arange(5), X, k=2, tau=0.99).tolist() == [0, 2]


def test_fusion_weighted_and_rrf():
    a = np.array([3.0, 2.0, 1.0, np.nan])
    b = np.array([1.0, 3.0, 2.0, 0.0])
    assert ranks(a).tolist() == [0, 1, 2, 3]
    order, fused = fuse_ranks([a, b], [0.5, 0.5])
    assert fused.tolist() == [1.0, 0.5, 1.5, 3.0] and order.tolist() == [1, 0, 2, 3]
    order_rrf, _ = fuse_ranks([a, b], method="rrf")
    assert order_rrf[0] == 1
    with pytest.raises(ValueError):
        fuse_ranks([a, b], method="borda")


def test_sliding_window_mirrors_clusters_and_respects_tau():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    clusters = np.repeat([0, 1, 2], [150, 100, 50])
    order = rng.permutation(300)
    sel = sliding_window_diverse(order, X, 30, window=4, tau=0.95, clusters=clusters)
    assert len(sel) == len(set(sel.tolist())) == 30
    assert np.bincount(clusters[sel], minlength=3).tolist() == [15, 10, 5]
    E = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = E[sel] @ E[sel].T
    np.fill_diagonal(S, 0)
    assert S.max() <= 0.95
    dup = np.repeat(X[:5], 20, axis=0)  # only 5 distinct rows: tau cannot be met -> fill by rank
    assert len(sliding_window_diverse(np.arange(100), dup, 10, tau=0.9)) == 10


def test_facility_location_sparse_equals_dense_at_small_n():
    X = np.random.default_rng(2).normal(size=(120, 6)).astype(np.float32)
    dense = facility_location_dense(X, 15)
    sparse = facility_location(X, 15, knn=119)
    assert sparse.order.tolist() == dense.order.tolist()
    np.testing.assert_allclose(sparse.gains, dense.gains, rtol=1e-6)
    assert np.all(np.diff(dense.gains) <= 1e-9)  # submodular: gains never grow
    approx = facility_location(X, 15, knn=10)
    assert len(set(approx.order.tolist())) == 15


def test_coverage_report():
    X = np.array([[0.0, 0], [1, 0], [10, 0], [11, 0]], dtype=np.float32)
    rep = coverage_report(X, [0, 2], clusters=np.array([0, 0, 1, 1]))
    assert rep["covering_radius"] == pytest.approx(1.0) and rep["mean_nearest"] == pytest.approx(0.5)
    assert rep["cluster_share_l1"] == pytest.approx(0.0) and rep["clusters_covered"] == 2
