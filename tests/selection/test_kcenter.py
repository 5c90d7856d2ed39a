import numpy as np
import pytest
import torch

from selection.kcenter import kcenter_greedy


def textbook(X, k, first, initial=()):
    """Farthest-first traversal with a full distance matrix (the oracle; small N only)."""
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    sel = list(initial) or [first]
    picks = [] if initial else [first]
    while len(picks) < k:
        dmin = D[:, sel].min(axis=1)
        j = int(np.argmax(dmin))
        sel.append(j)
        picks.append(j)
    return picks


def test_points_on_a_line():
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [5.0]], dtype=np.float32)
    r = kcenter_greedy(X, 3, initial=[0])
    assert r.order.tolist() == [4, 5, 2] or r.order.tolist() == textbook(X, 3, None, [0])
    assert r.order.tolist() == textbook(X, 3, None, [0])


def test_grid_matches_textbook_and_radius_never_grows():
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2).astype(np.float32)
    r = kcenter_greedy(g, 12, seed=3)
    assert r.order.tolist() == textbook(g, 12, int(r.order[0]))
    assert np.all(np.diff(r.radius) <= 1e-6)
    assert len(set(r.order.tolist())) == 12


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_random_clustered_matches_textbook(metric):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16)) * 5
    X = (centres[rng.integers(0, 8, 400)] + rng.normal(size=(400, 16))).astype(np.float32)
    r = kcenter_greedy(X, 40, seed=1, metric=metric, chunk=97)  # odd chunk exercises the chunk loop
    Y = X / np.linalg.norm(X, axis=1, keepdims=True) if metric == "cosine" else X
    assert r.order.tolist() == textbook(Y, 40, int(r.order[0]))
    one = kcenter_greedy(X, 40, seed=1, metric=metric, block=1)
    assert one.order.tolist() == r.order.tolist()  # blocked evaluation changes no pick
    assert one.evaluated < 40 * 400 * 0.8  # the triangle inequality skipped work


def test_seed_fixes_result_and_initial_set_grows():
    X = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
    a, b = kcenter_greedy(X, 10, seed=5), kcenter_greedy(X, 10, seed=5)
    assert a.order.tolist() == b.order.tolist()
    grown = kcenter_greedy(X, 10, initial=[3, 7, 11])
    assert not set(grown.order.tolist()) & {3, 7, 11}
    assert grown.order.tolist() == textbook(X, 13, None, [3, 7, 11])[:10]


def test_k_at_least_n_returns_everything_with_nan_and_duplicates():
    X = np.array([[0, 0], [0, 0], [1, 1], [np.nan, 0], [3, 3], [3, 3]], dtype=np.float32)
    r = kcenter_greedy(X, 10)
    assert sorted(r.order.tolist()) == list(range(6))
    assert r.order[-1] == 3  # the NaN row is never picked as a centre, only appended
    assert np.isfinite(r.radius).all() and r.radius[4] == 0.0  # all finite rows covered
    few = kcenter_greedy(X, 3, seed=0)
    assert 3 not in few.order.tolist() and len(set(few.order.tolist())) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_picks_equal_cpu():
    X = np.random.default_rng(3).normal(size=(3000, 32)).astype(np.float32)
    cpu = kcenter_greedy(X, 60, seed=1)
    gpu = kcenter_greedy(X, 60, seed=1, device="cuda")
    assert gpu.order.tolist() == cpu.order.tolist()
    np.testing.assert_allclose(gpu.radius, cpu.radius, rtol=1e-4)
