"""RDS+ selection: planted on-target rows first, round-robin covers every target, deterministic ties."""
import numpy as np
import pytest

from selection.rds import rds_select, unit


def reference_round_robin(P, T, eligible, k):
    """Brute force: the whole similarity matrix, each turn a full argmax over untaken rows."""
    S = unit(T) @ unit(P).T
    taken = ~eligible.copy()
    order, by = [], []
    while len(order) < min(k, eligible.sum()):
        for t in range(len(T)):
            if len(order) >= min(k, eligible.sum()):
                break
            s = np.where(taken, -np.inf, S[t])
            best = np.flatnonzero(s == s.max())[0]  # lowest position among ties
            taken[best] = True
            order.append(best)
            by.append(t)
    return order, by


def test_planted_on_target_rows_come_first_and_every_target_is_covered():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(500, 24)).astype(np.float32)
    T = rng.normal(size=(6, 24)).astype(np.float32)
    plant = [400, 17, 250, 3, 99, 480]
    P[plant] = T * 3.0  # each target's exact direction
    res = rds_select(P, T, np.ones(500, bool), 30)
    assert res.order[:6].tolist() == plant  # turn t picks target t's planted row
    assert np.bincount(res.picked_by[res.order], minlength=6).tolist() == [5] * 6
    assert (res.outcome == "selected").sum() == 30 and len(set(res.order)) == 30
    assert np.allclose(res.score[plant], 1.0, atol=1e-5) and res.nearest_target[plant].tolist() == list(range(6))


def test_round_robin_equals_brute_force():
    rng = np.random.default_rng(3)
    P = rng.normal(size=(300, 8)).astype(np.float32)
    T = rng.normal(size=(7, 8)).astype(np.float32)
    eligible = rng.random(300) > 0.2
    res = rds_select(P, T, eligible, 120)
    order, by = reference_round_robin(P, T, eligible, 120)
    assert res.order.tolist() == order and res.picked_by[res.order].tolist() == by
    assert (res.outcome[~eligible] == "error").all()


def test_ties_go_to_the_lower_position_and_exhausted_lists_refetch():
    P = np.ones((100, 4), np.float32)  # every pool row identical: one big tie
    T = np.ones((3, 4), np.float32)
    res = rds_select(P, T, np.ones(100, bool), 100)
    assert res.order.tolist() == list(range(100))
    # a tie group that the first fetch cuts: lists are trimmed to exact prefixes, then fetched deeper
    assert rds_select(P, T[:1], np.ones(100, bool), 10).order.tolist() == list(range(10))
    mixed = np.vstack([np.random.default_rng(0).normal(size=(60, 4)), np.ones((40, 4))]).astype(np.float32)
    assert rds_select(mixed, T, np.ones(100, bool), 30).order.tolist() == list(range(60, 90))
    assert rds_select(P, T, np.ones(100, bool), 10, "max").order.tolist() == list(range(10))


def test_max_aggregate_ranks_by_best_similarity():
    rng = np.random.default_rng(5)
    P = rng.normal(size=(200, 6)).astype(np.float32)
    T = rng.normal(size=(4, 6)).astype(np.float32)
    res = rds_select(P, T, np.ones(200, bool), 15, "max")
    best = (unit(T) @ unit(P).T).max(axis=0)
    assert set(res.order.tolist()) == set(np.argsort(-best)[:15].tolist())
    assert np.all(np.diff(res.score[res.order]) <= 1e-7)


def test_refusals():
    P = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match="round_robin, max"):
        rds_select(P, P, np.ones(5, bool), 2, "mean")
    with pytest.raises(ValueError, match="no usable rows"):
        rds_select(P, np.zeros((0, 2), np.float32), np.ones(5, bool), 2)
